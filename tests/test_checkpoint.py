import os
import subprocess
import sys

import pytest
import torch

from backend.model.checkpoint import load_model, save_atomic
from backend.errors import UserError
from backend.model.vit import PRESETS, ViTConfig, VisionTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ViTConfig(stem_channels=4, embed_dim=16, depth=1, num_heads=2)


def _save(model, path, **extra):
    save_atomic({"config": model.cfg.to_dict(), "model": model.state_dict(), **extra}, path)


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = VisionTransformer(PRESETS["fast"]).eval()
    _save(model, tmp_path / "m.pt", preset="fast")
    loaded, ckpt = load_model(tmp_path / "m.pt")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert ckpt["preset"] == "fast" and not list(tmp_path.glob("*.tmp"))


def _corrupt(kind, path):
    model = VisionTransformer(TINY)
    if kind == "truncated":
        _save(model, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "architecture":
        state = VisionTransformer(ViTConfig(stem_channels=4, embed_dim=32, depth=1, num_heads=2)).state_dict()
        save_atomic({"config": TINY.to_dict(), "model": state}, path)
    elif kind == "nan":
        state = model.state_dict()
        state["head.weight"][0, 0] = float("nan")
        save_atomic({"config": TINY.to_dict(), "model": state}, path)
    elif kind == "not-a-checkpoint":
        save_atomic({"weights": torch.zeros(3)}, path)
    elif kind == "missing":
        pass


KINDS = ["truncated", "random", "empty", "architecture", "nan", "not-a-checkpoint", "missing"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_checkpoint_raises_user_error(tmp_path, kind):
    path = tmp_path / "bad.pt"
    _corrupt(kind, path)
    with pytest.raises(UserError) as e:
        load_model(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


class _Payload:
    """Unpickling this runs os.system: the checkpoint must be refused before that happens."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"config": TINY.to_dict(), "model": VisionTransformer(TINY).state_dict(), "x": _Payload(marker)}, path)
    with pytest.raises(UserError):
        load_model(path)
    assert not marker.exists()


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "bad.pt"
    _corrupt("random", path)
    r = subprocess.run([sys.executable, "main.py", "--eval", "--checkpoint", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: cannot load checkpoint")
