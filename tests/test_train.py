"""Training and evaluation, in-process on the tiny model and a small MNIST subset; only the
SIGKILL-and-resume test starts processes (the torchrun one lives in test_distributed.py)."""
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

import main
from app_fakes import TINY
from backend.errors import UserError
from backend.model.checkpoint import save_atomic
from backend.model.config import PRESETS
from backend.training import train as train_module
from backend.training.config import TrainConfig
from backend.training.data import VAL_SIZE, train_val_split
from backend.training.train import lr_lambda, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny(monkeypatch):
    """`--preset tiny`: the tests' tiny model, trainable through the real command line."""
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    return ["--preset", "tiny", "--batch-size", "32", "--lr", "1e-2", "--warmup-epochs", "0.2",
            "--augment", "light", "--workers", "0", "--device", "cpu"]


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_training_learns_and_an_interrupted_run_resumes_as_it_was(tmp_path, mnist_dir, tiny, monkeypatch, capsys):
    out = tmp_path / "run dir"  # a space: the resume hint must quote it
    evaluate_loader = train_module.evaluate_loader
    calls = []

    def interrupt_in_epoch_2(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate_loader(*a)

    monkeypatch.setattr(train_module, "evaluate_loader", interrupt_in_epoch_2)
    code = main.main(["--train", *tiny, "--epochs", "3", "--limit", "1024", "--data-dir", str(mnist_dir),
                      "--out", str(out)])
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 130 and [row["epoch"] for row in history(out)] == [1]
    assert hint.startswith("interrupted; continue with: python main.py ")

    # The hint, exactly as printed, with no data folder in the environment: it continues the same
    # run (3 epochs on 1,024 images, same schedule), not a default one.
    monkeypatch.setattr(train_module, "evaluate_loader", evaluate_loader)
    monkeypatch.delenv("DIGITS_DATA_DIR", raising=False)
    argv = shlex.split(hint.split(": ", 1)[1])[2:]
    assert "--data-dir" not in argv and main.main(argv) == 0
    assert "at epoch 2/3" in capsys.readouterr().out
    h = history(out)
    assert [row["epoch"] for row in h] == [1, 2, 3]
    assert h[2]["train_loss"] < h[0]["train_loss"] and h[2]["val_loss"] < h[0]["val_loss"]
    assert h[2]["lr"] == pytest.approx(0.0, abs=1e-9)  # the cosine reached its end: the 3-epoch schedule
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and last["train_config"]["limit"] == 1024 and last["train_config"]["lr"] == 1e-2

    # A flag that would change the run is refused, not silently applied or ignored.
    assert main.main(argv + ["--epochs", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 5 differs" in err

    # --eval prints the accuracy line last and writes the report folder.
    report = tmp_path / "report"
    assert main.main(["--eval", "--checkpoint", str(out / "best.pt"), "--limit", "300", "--data-dir", str(mnist_dir),
                      "--report-dir", str(report)]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads((report / "metrics.json").read_text())
    assert last_line == f"test_accuracy={metrics['accuracy']:.4f}" and metrics["n_test"] == 300
    assert metrics["accuracy"] > 0.15  # above chance (0.1) after 96 steps of the tiny model
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert (report / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_fine_tuning_starts_from_init_weights_with_extra_digits(tmp_path, mnist_dir, tiny, capsys):
    torch.manual_seed(1)
    init = tmp_path / "init.pt"
    from backend.model.vit import VisionTransformer

    start = VisionTransformer(TINY).state_dict()
    earlier = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5} for e in (1, 2)]
    save_atomic({"config": TINY.to_dict(), "model": start, "preset": "tiny", "history": earlier}, init)
    images = np.zeros((40, 28, 28), np.uint8)
    images[:, 6:22, 12:16] = 255
    np.savez(tmp_path / "extra.npz", images=images, labels=np.ones(40, np.int64))
    tc = TrainConfig(epochs=1, batch_size=32, lr=1e-9, workers=0, device="cpu", limit=64, data_dir=str(mnist_dir),
                     out=str(tmp_path / "ft"), init=str(init), extra_data=str(tmp_path / "extra.npz"))
    train(tc)
    tuned = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    # A learning rate of 1e-9 leaves the weights where --init put them (a fresh model would differ).
    assert all(torch.allclose(tuned["model"][k].float(), v.float(), atol=1e-5) for k, v in start.items()
               if v.is_floating_point() and "running" not in k)
    assert tuned["epoch"] == 1 and tuned["preset"] == "tiny"  # a fresh schedule, the init's model
    # The history goes on from the init's, as a second phase, so the report draws both.
    assert [(r["phase"], r["epoch"]) for r in tuned["history"]] == [(0, 1), (0, 2), (1, 1)]
    # The end of training says where the checkpoints are and what to run next.
    out = capsys.readouterr().out.strip().splitlines()
    best = tmp_path / "ft" / "best.pt"
    assert out[-3].startswith("done in ") and f"in {best}" in out[-3] and str(tmp_path / "ft" / "last.pt") in out[-3]
    assert out[-2].split() == ["evaluate", "it:", "python", "main.py", "--eval", "--checkpoint", str(best)]
    assert out[-1].split()[2:5] == ["python", "camera_inferencer.py", "--checkpoint"]
    np.savez(tmp_path / "bad.npz", images=np.zeros((5, 32, 32), np.uint8), labels=np.arange(5))
    with pytest.raises(UserError, match="expected images"):
        train(replace(tc, extra_data=str(tmp_path / "bad.npz"), out=str(tmp_path / "b")))


def test_train_and_validation_images_are_disjoint(mnist_dir):
    train_ds, val_ds = train_val_split(str(mnist_dir), seed=3)
    tr, va = set(train_ds.indices), set(val_ds.indices)
    assert len(va) == VAL_SIZE and len(tr) == 60_000 - VAL_SIZE and not tr & va
    small_train, small_val = train_val_split(str(mnist_dir), limit=500, seed=3)
    assert set(small_train.indices) <= tr and set(small_val.indices) <= va  # a limit keeps the split
    other = train_val_split(str(mnist_dir), seed=4)[1]
    assert set(other.indices) != va  # the seed picks the split


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    total, warmup = 100, 10
    lrs = [lr_lambda(s, total, warmup) for s in range(total + 1)]
    assert lrs[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert lrs[warmup] == 1.0 and lrs[total] == pytest.approx(0.0, abs=1e-12)
    assert lrs[55] == pytest.approx(0.5)  # half-way through the decay: cos(pi/2)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))


@pytest.mark.parametrize("flag, value", [("--weight-decay", "nan"), ("--warmup-epochs", "nan"), ("--workers", "-1"),
                                         ("--lr", "inf"), ("--warmup-epochs", "-1")])
def test_bad_training_flags_are_refused_before_training(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        main.main(["--train", flag, value])
    assert e.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("change", [{"weight_decay": float("nan")}, {"warmup_epochs": float("nan")}, {"workers": -1},
                                    {"label_smoothing": 1.0}])
def test_bad_settings_are_refused_in_process_too(tmp_path, change):
    with pytest.raises(UserError, match="out of range"):
        train(TrainConfig(out=str(tmp_path), **change))


def test_a_diverging_run_stops_with_one_line(tmp_path, mnist_dir, tiny, capsys):
    assert main.main(["--train", *tiny, "--lr", "1e30", "--epochs", "1", "--limit", "64",
                      "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err  # after the progress bar's carriage returns
    assert err.split("\r")[-1].startswith("error: training diverged") and err.count("\n") == 1


def test_full_disk_while_saving_a_checkpoint_is_one_line_exit_3(tmp_path, mnist_dir, tiny, monkeypatch, capsys):
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: (os.close(fd), open("/dev/full", mode))[1]
                        if "w" in mode else real_fdopen(fd, mode, *a, **k))
    out = tmp_path / "r"
    assert main.main(["--train", *tiny, "--epochs", "1", "--limit", "64", "--data-dir", str(mnist_dir),
                      "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.split("\r")[-1].startswith("error: cannot write checkpoint") and "no checkpoint was kept" in err
    assert err.count("\n") == 1 and not list(out.glob("*.pt")) and not list(out.glob("*.tmp"))


def test_unwritable_or_missing_folders_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main.main(["--train", "--limit", "100", "--out", str(blocker / "run")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write to --out")
    missing = tmp_path / "nowhere"
    assert main.main(["--eval", "--data-dir", str(missing)]) == 2
    assert "no such folder" in capsys.readouterr().err and not missing.exists()  # not created on the way


def test_missing_data_offline_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(socket.socket, "connect", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    assert main.main(["--eval", "--limit", "10"]) == 2
    assert "MNIST not available" in capsys.readouterr().err


def start(*args, **kw) -> subprocess.Popen:
    """`python main.py ARGS` on one core, started."""
    return subprocess.Popen([sys.executable, "main.py", *map(str, args)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, mnist_dir):
    """SIGKILL during epoch 2, then --resume: the final weights equal an uninterrupted run's."""
    common = ["--train", "--preset", "fast", "--limit", "320", "--batch-size", "32", "--epochs", "2",
              "--workers", "0", "--device", "cpu", "--data-dir", mnist_dir]
    whole, killed = (start(*common, "--out", out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for out in (tmp_path / "whole", tmp_path / "killed"))  # side by side, one core each
    out = tmp_path / "killed"
    metrics = out / "metrics.jsonl"
    while killed.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.05)
    killed.kill()
    killed.wait()
    assert whole.wait(timeout=300) == 0
    if metrics.read_text().count("\n") >= 2:
        pytest.skip("the run finished before it could be killed")
    resumed = start("--train", "--out", out, "--resume", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = resumed.communicate(timeout=300)  # the settings come from the checkpoint
    assert resumed.returncode == 0, stderr
    assert "at epoch 2/2" in stdout

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(out / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_extra_digits_load_and_bad_files_are_refused(tmp_path):
    from backend.training.data import ArrayDigits, train_transform

    images = np.zeros((5, 28, 28), np.uint8)
    images[:, 8:20, 12:16] = 255
    np.savez(tmp_path / "ok.npz", images=images, labels=np.arange(5))
    ds = ArrayDigits(str(tmp_path / "ok.npz"), train_transform())
    x, y = ds[3]
    assert len(ds) == 5 and y == 3 and x.shape == (1, 28, 28) and x.dtype == torch.float32
    np.savez(tmp_path / "bad.npz", images=np.zeros((5, 32, 32), np.uint8), labels=np.arange(5))
    for bad in ("bad.npz", "missing.npz"):
        with pytest.raises(UserError):
            ArrayDigits(str(tmp_path / bad))


def test_light_augmentation_only_moves_the_digit_and_unknown_ones_are_refused():
    from backend.frame.mnist import MNIST_MEAN, MNIST_STD
    from backend.training.data import train_transform

    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 8:20, 12:16] = 255
    torch.manual_seed(0)
    light = torch.stack([train_transform("light")(img) for _ in range(20)])
    webcam = torch.stack([train_transform("webcam")(img) for _ in range(20)])
    background = -MNIST_MEAN / MNIST_STD
    # Tilt, shift and scale keep a clean black background and the ink's brightness;
    # the webcam mix adds noise to the background.
    assert torch.allclose(light[:, :, 0], torch.full_like(light[:, :, 0], background))
    white = (1 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(light.amax(dim=(1, 2, 3)), torch.full((20,), white), atol=1e-4)
    assert torch.allclose(light.flatten(1).min(1).values, torch.full((20,), background))
    assert not torch.allclose(webcam[:, :, 0], torch.full_like(webcam[:, :, 0], background))  # noise
    with pytest.raises(UserError, match="augmentation"):
        train_transform("heavy")
