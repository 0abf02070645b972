"""Training and evaluation through the real CLI, on a small MNIST subset."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

from backend.model.checkpoint import load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "main.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_loss_and_resume_continues(tmp_path, mnist_dir):
    out = tmp_path / "run"
    common = ["--train", "--preset", "fast", "--limit", "1200", "--batch-size", "64", "--lr", "2e-3",
              "--warmup-epochs", "0.3", "--workers", "0", "--data-dir", mnist_dir, "--out", out]
    r = cli(*common, "--epochs", "2")
    assert r.returncode == 0, r.stderr
    h = history(out)
    assert [row["epoch"] for row in h] == [1, 2]
    assert h[1]["train_loss"] < h[0]["train_loss"] and h[1]["val_loss"] < h[0]["val_loss"]

    # An interrupted run of 3 epochs continues at epoch 3 from last.pt, not from scratch.
    r = cli(*common, "--epochs", "3", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout and "at epoch 3/3" in r.stdout
    assert [row["epoch"] for row in history(out)] == [1, 2, 3]
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and len(last["history"]) == 3
    model, ckpt = load_model(out / "best.pt")
    assert ckpt["preset"] == "fast" and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)

    # --eval on a subset prints the accuracy line last and writes the report folder.
    report = tmp_path / "report"
    r = cli("--eval", "--checkpoint", out / "best.pt", "--limit", "300", "--data-dir", mnist_dir,
            "--report-dir", report)
    assert r.returncode == 0, r.stderr
    last_line = r.stdout.strip().splitlines()[-1]
    assert last_line.startswith("test_accuracy=")
    metrics = json.loads((report / "metrics.json").read_text())
    assert abs(float(last_line.split("=")[1]) - metrics["accuracy"]) < 1e-4 and metrics["n_test"] == 300
    assert metrics["accuracy"] > 0.2  # well above chance (0.1) after ~70 steps
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert (report / "confusion_matrix.png").stat().st_size > 0 and (report / "misclassified.png").stat().st_size > 0


def test_unwritable_out_fails_before_training(tmp_path, mnist_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = cli("--train", "--preset", "fast", "--limit", "100", "--data-dir", mnist_dir, "--out", blocker / "run")
    assert r.returncode == 2 and r.stderr.startswith("error: cannot write to --out")
    assert r.stderr.count("\n") == 1


def test_missing_data_is_one_clear_line(tmp_path):
    env = {**os.environ, "DIGITS_DATA_DIR": str(tmp_path / "nowhere")}
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.');"
                        "import socket; socket.socket.connect = lambda *a: (_ for _ in ()).throw(OSError('offline'));"
                        "import main; sys.exit(main.main(['--eval', '--limit', '10']))"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "MNIST not available" in r.stderr


def test_killed_run_resumes_to_the_same_weights(tmp_path, mnist_dir):
    """SIGKILL during epoch 2, then --resume: the final weights equal an uninterrupted run's."""
    common = ["--train", "--preset", "fast", "--limit", "600", "--batch-size", "32", "--epochs", "2",
              "--workers", "0", "--data-dir", mnist_dir]
    assert cli(*common, "--out", tmp_path / "whole").returncode == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "main.py", *map(str, common), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    if metrics.read_text().count("\n") >= 2:
        pytest.skip("the run finished before it could be killed")
    r = cli(*common, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr and "at epoch 2/2" in r.stdout

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(out / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_extra_digits_load_and_bad_files_are_refused(tmp_path):
    import numpy as np

    from backend.training.data import ArrayDigits, train_transform
    from backend.errors import UserError

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
    from backend.training.data import train_transform
    from backend.errors import UserError
    from backend.frame.mnist import MNIST_MEAN, MNIST_STD

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
