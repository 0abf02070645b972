"""Two CPU processes with gloo under torchrun: both ranks train, rank 0 alone writes, a killed run resumes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from backend.model.checkpoint import load_checkpoint, load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main.py",
           "--train", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def kill_with_workers(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its worker processes (which it starts in sessions of their own)."""
    def ppid(stat: str) -> int:
        return int(stat.rsplit(")", 1)[1].split()[1])

    workers = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and ppid(open(f"/proc/{d}/stat").read()) == proc.pid:
                workers.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    for pid in [proc.pid, *workers]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available()
                    or not os.path.isdir("/proc"), reason="this torch build has no gloo, or no /proc to find ranks")
def test_two_gloo_ranks_train_and_a_killed_run_resumes(mnist_dir, tmp_path):
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    # 500 images per rank in batches of 128: epoch 2 lasts long enough to be killed in.
    proc = _torchrun("--preset", "fast", "--limit", "1000", "--batch-size", "128", "--epochs", "2", "--workers", "0",
                     "--device", "cpu", "--data-dir", mnist_dir, "--out", out)
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.02)
    kill_with_workers(proc)
    stdout, stderr = proc.communicate()
    assert "2 process(es), effective batch 256" in stdout, stderr[-2000:]
    assert stdout.count("epoch 1/2 train_loss") == 1  # only rank 0 logs
    if metrics.read_text().count("\n") >= 2:
        pytest.skip("the run finished before it could be killed")
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]

    proc = _torchrun("--out", out, "--resume")  # every other setting comes from the checkpoint
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]  # torchrun exits 0 only when every rank did
    assert "at epoch 2/2" in stdout and stdout.count("epoch 2/2 train_loss") == 1
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(row["epoch"], row["world_size"]) for row in rows] == [(1, 2), (2, 2)]

    model, ckpt = load_model(out / "best.pt")
    assert ckpt["preset"] == "fast" and model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and "optimizer" in last and last["train_config"]["limit"] == 1000
