import os
from dataclasses import replace

import pytest
import torch

import camera_inferencer
import main
from app_fakes import TINY
from backend.model.checkpoint import load_model, save_atomic
from backend.errors import UserError
from backend.model.vit import PRESETS, VisionTransformer



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
        state = VisionTransformer(replace(TINY, embed_dim=32)).state_dict()
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


def test_pickle_payload_is_never_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"config": TINY.to_dict(), "model": VisionTransformer(TINY).state_dict(), "x": _Payload(marker)}, path)
    with pytest.raises(UserError, match="never loaded"):
        load_model(path)
    # The app refuses it with one line too (before any source is opened), and nothing ran.
    code = camera_inferencer.main(["--source", "demo", "--no-display", "--checkpoint", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "weights_only" not in err[0]
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"\0" + os.urandom(4095), "not a PyTorch"),
                                              (b"PK\x03\x04" + bytes(100), "corrupt or truncated")],
                         ids=["empty", "random", "broken-zip"])
def test_unloadable_files_say_what_they_are_not_how_to_unpickle(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as e:
        load_model(path)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)
    assert "internal miniz error" not in str(e.value)  # torch's advice to its own developers


@pytest.mark.parametrize("change", [{"patch_size": 0}, {"patch_size": 29}, {"num_heads": 3}, {"depth": -1},
                                    {"stem_stride": 3}, {"embed_dim": "16"}, {"mlp_ratio": float("nan")},
                                    {"drop_path": 1.0}, {"embed_dim": 4096}],
                         ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values()))))
def test_crafted_configs_are_refused_before_a_model_is_built(tmp_path, change):
    """A config no model can be built from, or one far larger than the weights beside it
    (embed_dim 4096 would allocate gigabytes), is a one-line error, not a crash."""
    path = tmp_path / "crafted.pt"
    save_atomic({"config": {**TINY.to_dict(), **change}, "model": VisionTransformer(TINY).state_dict()}, path)
    with pytest.raises(UserError, match="does not match") as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 1}, path)
    real_fdopen = os.fdopen

    def full_disk(fd, mode="r", *a, **k):  # the temporary file lands on a full disk
        os.close(fd)
        return open("/dev/full", mode)

    monkeypatch.setattr(os, "fdopen", full_disk)
    with pytest.raises(OSError):
        save_atomic({"epoch": 2, "w": torch.zeros(100_000)}, path)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert torch.load(path, weights_only=True) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_cli_reports_bad_checkpoint_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.pt"
    _corrupt("random", path)
    assert main.main(["--eval", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot load checkpoint")
