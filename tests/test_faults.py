"""Faults the live app must survive: lost cameras, signals while recording, untrusted files, long runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import camera_inferencer
from app_fakes import FakeCapture, digit_frame, video_info, write_video
from backend.live.app import AppConfig, run_app
from backend.errors import SourceError
from backend.live.sources import DemoSource, LiveCapture, LiveConfig

ROOT = Path(__file__).resolve().parent.parent




def lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the JSONL ends in half a line"
    return [json.loads(l) for l in text.splitlines()]


@pytest.mark.parametrize("fail", ["raise", "end", "stall", "garbage"])
def test_lost_camera_ends_with_exit_1_and_a_finalised_recording(tmp_path, pipeline, fail):
    frames = [digit_frame("5", seed=i) for i in range(8)]
    if fail == "garbage":  # a driver that keeps delivering unusable buffers
        frames += [np.zeros((0, 0, 3), np.uint8), np.zeros(7, np.uint8)] * 40

    def open_capture(opened=[]):  # reopening the lost camera gives nothing
        opened.append(1)
        return FakeCapture(frames if len(opened) == 1 else [], fail="end" if fail == "garbage" else fail,
                           delay=0.005)

    cam = LiveCapture(open_capture, "camera 0", LiveConfig(retry_s=0.2, stall_s=0.2, retry_wait_s=0.05),
                      warn=lambda m: None)
    cfg = AppConfig(display=False, record=str(tmp_path / "out.mp4"), jsonl=str(tmp_path / "out.jsonl"))
    try:
        with pytest.raises(SourceError, match="camera 0") as e:
            run_app(cam, pipeline, cfg, warn=lambda m: None)
    finally:
        cam.release()
    assert e.value.code == 1
    n = len(lines(tmp_path / "out.jsonl"))
    assert n >= 1 and video_info(tmp_path / "out.mp4")[:3] == (n, 320, 240)


def signal_run(tmp_path: Path, ckpt: Path, sig: int) -> tuple[int, str, Path, Path]:
    video = write_video(tmp_path / "long.avi", [digit_frame("42", seed=i % 7, shift=i % 3) for i in range(400)])
    out, log = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    cmd = [sys.executable, str(ROOT / "camera_inferencer.py"), "--source", str(video), "--no-display",
           "--record", str(out), "--jsonl", str(log), "--checkpoint", str(ckpt), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err, out, log


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_while_recording_leaves_complete_outputs(tmp_path, ckpt, sig, code):
    rc, err, out, log = signal_run(tmp_path, ckpt, sig)
    assert rc == code, err
    assert "Traceback" not in err and "interrupted" in err
    recs = lines(log)
    assert [r["frame"] for r in recs] == list(range(len(recs)))
    n, w, h, _ = video_info(out)
    assert (n, w, h) == (len(recs), 320, 240), "every frame written before the signal is in the video"


def test_pickle_payload_checkpoint_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "model": Payload()}, evil)
    code = camera_inferencer.main(["--source", "demo", "--no-display", "--checkpoint", str(evil)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert not marker.exists()


def test_short_soak_keeps_memory_flat(pipeline):
    """A short version of the 10,000-frame soak (see the benchmark): no growth after warm-up."""

    class Scene:
        def __init__(self):
            self.t = 0

        def next_frame(self):
            self.t += 1
            return digit_frame("2024", shift=self.t % 6, seed=self.t % 10)

    src = DemoSource(scene=Scene())
    run_app(src, pipeline, AppConfig(display=False, max_frames=20))  # warm-up: caches, allocator pools
    tracemalloc.start()
    run_app(src, pipeline, AppConfig(display=False, max_frames=20))
    mid = tracemalloc.get_traced_memory()[0]
    run_app(src, pipeline, AppConfig(display=False, max_frames=60))
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert end - mid < 1_000_000, f"traced memory grew by {(end - mid) / 1e6:.1f} MB over 60 frames"
