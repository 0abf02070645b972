"""ONNX export and the ONNX Runtime backend agree with PyTorch on real MNIST digits."""
import sys

import numpy as np
import pytest

from backend.model import recognizer as recognizer_mod
from backend.errors import UserError
from backend.model.recognizer import Recognizer, RecognizerConfig

FIELDS = ("probs", "confidence", "attn_rollout", "attn_last")


@pytest.fixture(scope="module")
def onnx_mod():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from backend.model import onnx_engine as onnx_backend

    return onnx_backend


@pytest.fixture(scope="module")
def digits(mnist_dir):
    from backend.training.data import test_batch

    return test_batch(str(mnist_dir), 64)


@pytest.fixture(scope="module")
def exported(onnx_mod, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    model, _ = onnx_mod.load_model(None)
    onnx_mod.export_model(model, path)
    return path


@pytest.mark.parametrize("n", [1, 5, 64])
def test_onnx_runtime_matches_torch_on_mnist(onnx_mod, exported, digits, n):
    torch_rec = Recognizer(None, RecognizerConfig(device="cpu", backend="torch"))
    onnx_rec = Recognizer(None, RecognizerConfig(backend="onnx", onnx_file=exported))
    a, b = torch_rec.predict(digits[:n]), onnx_rec.predict(digits[:n])
    assert onnx_rec.backend == "onnx" and onnx_rec.grid == torch_rec.grid
    np.testing.assert_array_equal(a.digits, b.digits)
    for f in FIELDS:
        assert getattr(b, f).shape == getattr(a, f).shape and getattr(b, f).dtype == np.float32
        np.testing.assert_allclose(getattr(b, f), getattr(a, f), atol=1e-4, rtol=0)


def test_every_exported_output_within_tolerance(onnx_mod, exported, digits):
    model, _ = onnx_mod.load_model(None)
    diffs = onnx_mod.compare_with_torch(model, onnx_mod.OnnxSession(exported), digits)
    assert set(diffs) == {"logits", "probs", "rollout", "attn_last"}
    assert max(diffs.values()) <= onnx_mod.TOLERANCE


def test_session_predicts_like_a_recognizer_and_handles_empty_batches(onnx_mod, exported, digits):
    s = onnx_mod.OnnxSession(exported, threads=1)
    p = s.predict(digits[:3])
    assert p.digits.shape == (3,) and p.attn_rollout.shape == (3, s.grid, s.grid)
    np.testing.assert_allclose(p.probs.sum(1), 1, atol=1e-5)
    e = s.predict(digits[:0])
    assert e.probs.shape == (0, 10) and e.attn_last.shape == (0, s.grid, s.grid)


def test_cli_export_checks_against_torch(onnx_mod, mnist_dir, tmp_path, capsys):
    from main import main

    out = tmp_path / "m.onnx"
    assert main(["--export-onnx", str(out), "--limit", "32", "--data-dir", str(mnist_dir)]) == 0
    assert out.stat().st_size > 100_000 and "tolerance 1e-04" in capsys.readouterr().out


@pytest.mark.parametrize("failure", ["export", "check"])
def test_failed_export_leaves_no_file(onnx_mod, digits, tmp_path, monkeypatch, failure):
    def fail(*args, **kwargs):
        if failure == "export":  # half a file written, then the disk fills
            args[1].write_bytes(b"half")
            raise OSError(28, "No space left on device")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_mod, "export_model" if failure == "export" else "compare_with_torch", fail)
    out = tmp_path / "m.onnx"
    with pytest.raises(UserError if failure == "export" else KeyboardInterrupt):
        onnx_mod.export_checkpoint(None, out, digits[:8])
    assert list(tmp_path.iterdir()) == []


def test_unreadable_onnx_file_is_a_user_error(onnx_mod, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load ONNX model"):
        onnx_mod.OnnxSession(bad)


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    from backend.model.onnx_engine import require_onnxruntime

    with pytest.raises(UserError, match="pip install"):
        require_onnxruntime()
    with pytest.raises(UserError, match="pip install"):
        Recognizer(None, RecognizerConfig(backend="onnx"))


@pytest.mark.parametrize("have_ort,device,expected", [(True, "cpu", "onnx"), (False, "cpu", "torch"),
                                                      (True, "auto", None)])
def test_auto_backend_prefers_onnx_on_cpu_when_installed(monkeypatch, have_ort, device, expected):
    if have_ort:
        pytest.importorskip("onnxruntime")
    monkeypatch.setattr(recognizer_mod, "onnxruntime_available", lambda: have_ort)
    rec = Recognizer(None, RecognizerConfig(device=device, backend="auto"))
    if expected is None:  # auto device: onnx only where it resolves to the CPU
        expected = "onnx" if rec.device.type == "cpu" else "torch"
    assert rec.backend == expected


def test_bad_backend_and_onnx_on_gpu_are_user_errors():
    with pytest.raises(UserError, match="unknown backend"):
        Recognizer(None, RecognizerConfig(backend="tensorrt"))
    with pytest.raises(UserError, match="runs on the CPU"):
        Recognizer(None, RecognizerConfig(device="cuda", backend="onnx"))


def test_the_app_runs_an_exported_file_and_refuses_it_beside_torch(exported, tmp_path, monkeypatch, capsys):
    import cv2

    import camera_inferencer

    image = tmp_path / "page.png"
    cv2.imwrite(str(image), np.full((120, 160, 3), 230, np.uint8))
    seen = {}
    monkeypatch.setattr("backend.live.app.run_app", lambda source, pipeline, cfg, **kw: seen.setdefault("p", pipeline))
    monkeypatch.setattr("backend.live.app.describe", lambda summary: "")
    assert camera_inferencer.main(["--source", str(image), "--no-display", "--onnx", str(exported)]) == 0
    assert seen["p"].recognizer.backend == "onnx"
    capsys.readouterr()
    accurate = str(recognizer_mod.DEFAULT_CHECKPOINT).replace("digits_vit.pt", "digits_vit_accurate.pt")
    for args, words in ((["--backend", "torch"], "use --backend onnx"), (["--web"], "browser app"),
                        (["--onnx", str(tmp_path / "none.onnx")], "ONNX file not found"),
                        (["--checkpoint", accurate], "does not belong to checkpoint")):  # the file is what runs
        assert camera_inferencer.main(["--source", str(image), "--no-display", "--onnx", str(exported), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, args
