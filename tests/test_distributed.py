"""Two CPU processes with gloo under torchrun: both ranks train, rank 0 alone writes, resume works."""
import json
import os
import subprocess
import sys

import pytest
import torch

from backend.model.checkpoint import load_checkpoint, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torchrun(mnist_dir, out, epochs, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "main.py", "--train", "--preset", "fast", "--limit", "200", "--batch-size", "128", "--epochs", str(epochs),
           "--workers", "0", "--device", "cpu", "--data-dir", str(mnist_dir), "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo")
def test_two_gloo_ranks_train_resume_and_leave_a_loadable_checkpoint(mnist_dir, tmp_path):
    out = tmp_path / "run"
    # 100 images per rank and a batch of 128: each rank still gets one (partial) batch.
    r = _torchrun(mnist_dir, out, 1)
    assert r.returncode == 0, r.stderr[-2000:]  # torchrun exits 0 only when every rank did
    assert "2 process(es), effective batch 256" in r.stdout
    assert r.stdout.count("epoch 1/1 train_loss") == 1  # only rank 0 logs
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]

    r = _torchrun(mnist_dir, out, 2, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout and r.stdout.count("epoch 2/2 train_loss") == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(row["epoch"], row["world_size"]) for row in rows] == [(1, 2), (2, 2)]

    model, ckpt = load_model(out / "best.pt")
    assert ckpt["preset"] == "fast" and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and "optimizer" in last
