"""Faults the live app must survive: lost cameras, signals while recording, untrusted files, long runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

import camera_inferencer
from app_fakes import FakeCapture, digit_frame, video_info, write_video
from scenes import StandInScene
from backend.live.app import AppConfig, run_app
from backend.errors import SourceError
from backend.live.recorder import RECORD_EXT
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


def start_recording(folder: Path, ckpt: Path, out_name: str) -> tuple[subprocess.Popen, Path, Path]:
    """Record a generated video in a subprocess, with its JSONL, in `folder`."""
    folder.mkdir()
    video = write_video(folder / "long.avi", [digit_frame("42", seed=i % 7, shift=i % 3) for i in range(400)])
    out, log = folder / out_name, folder / "out.jsonl"
    cmd = [sys.executable, str(ROOT / "camera_inferencer.py"), "--source", str(video), "--no-display",
           "--record", str(out), "--jsonl", str(log), "--checkpoint", str(ckpt), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=folder), out, log


def signal_each(runs: list[tuple[subprocess.Popen, Path, Path]], n: int, sigs: list[list[int]]) -> None:
    """Send each run its signals as soon as its JSONL holds `n` lines."""
    pending = dict(enumerate(runs))
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for i, (proc, _, log) in list(pending.items()):
            if log.exists() and log.read_text().count("\n") >= n:
                assert proc.poll() is None, "the run ended before the signal"
                for sig in sigs[i]:
                    proc.send_signal(sig)
                    time.sleep(0.01)
                del pending[i]
        time.sleep(0.02)
    assert not pending, "no output within a minute"


SIGNALS = {"SIGINT": ([signal.SIGINT], 130), "SIGTERM": ([signal.SIGTERM], 143),
           "SIGINT-x3": ([signal.SIGINT] * 3, 130)}  # an impatient user pressing Ctrl+C again while it finalises


@pytest.mark.slow
def test_signals_while_recording_leave_complete_outputs(tmp_path, ckpt):
    runs = [start_recording(tmp_path / name, ckpt, "out.mp4") for name in SIGNALS]  # side by side
    signal_each(runs, 5, [sigs for sigs, _ in SIGNALS.values()])
    for (proc, out, log), (name, (_, code)) in zip(runs, SIGNALS.items()):
        err = proc.communicate(timeout=30)[1]
        assert proc.returncode == code, (name, err)
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted"), (name, err)
        recs = lines(log)
        assert [r["frame"] for r in recs] == list(range(len(recs))), name
        assert video_info(out)[:3] == (len(recs), 320, 240), f"{name}: a frame written before the signal is missing"


@pytest.mark.slow
def test_a_hard_kill_leaves_the_default_recording_playable(tmp_path, ckpt):
    """SIGKILL (or the out-of-memory killer) gives no chance to finalise: the default container
    (.mkv) still plays what was written; an .mp4 would hold no playable frame."""
    assert RECORD_EXT == ".mkv"
    proc, out, log = run = start_recording(tmp_path / "run", ckpt, "out" + RECORD_EXT)
    signal_each([run], 60, [[signal.SIGKILL]])
    proc.communicate(timeout=30)
    recs = lines(log)  # whole lines only, even now
    n, w, h, _ = video_info(out)
    assert (w, h) == (320, 240) and len(recs) >= 60 and n >= len(recs) // 2, (n, len(recs))


@pytest.mark.slow
def test_short_soak_keeps_memory_flat(pipeline):
    """A short version of the 10,000-frame soak (see the benchmark): no growth after warm-up."""

    src = DemoSource(scene=StandInScene("2024", shifts=6, seeds=10))
    run_app(src, pipeline, AppConfig(display=False, max_frames=20))  # warm-up: caches, allocator pools
    tracemalloc.start()
    run_app(src, pipeline, AppConfig(display=False, max_frames=20))
    mid = tracemalloc.get_traced_memory()[0]
    run_app(src, pipeline, AppConfig(display=False, max_frames=60))
    end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert end - mid < 1_000_000, f"traced memory grew by {(end - mid) / 1e6:.1f} MB over 60 frames"


def test_a_full_disk_stops_the_run_with_exit_3_and_says_what_was_kept(tmp_path, ckpt, capsys, monkeypatch):
    video = write_video(tmp_path / "v.avi", [digit_frame("42", seed=i) for i in range(20)])
    run = ["--source", str(video), "--no-display", "--checkpoint", str(ckpt), "--record", str(tmp_path / "out.mkv")]
    # A disk that fails every write (ENOSPC) under the JSONL.
    assert camera_inferencer.main(run + ["--jsonl", "/dev/full"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "out.mkv finalised (0 frames)" in err[0], err

    # A disk that fills up after 5 frames: both outputs stop at the same whole frame, still playable.
    checks = iter(range(1000))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(
        1 << 40, 0, 1 << 40 if next(checks) < 10 else 1 << 20))  # 2 checks (video, JSONL) per frame
    assert camera_inferencer.main(run + ["--jsonl", str(tmp_path / "out.jsonl")]) == 3
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: disk full") and "finalised (5 frames)" in err[0], err
    assert len(lines(tmp_path / "out.jsonl")) == 5 and video_info(tmp_path / "out.mkv")[0] == 5


@pytest.mark.parametrize("args", [["--record", "{v}"], ["--jsonl", "{v}"], ["--jsonl", "{d}/o.mkv", "--record", "{d}/o.mkv"]],
                         ids=["record-over-input", "jsonl-over-input", "jsonl-is-record"])
def test_outputs_over_the_input_are_refused_before_anything_is_written(tmp_path, ckpt, args, capsys):
    video = write_video(tmp_path / "v.avi", [digit_frame("42", seed=i) for i in range(5)])
    before = video.read_bytes()
    argv = [a.format(v=video, d=tmp_path) for a in args]
    code = camera_inferencer.main(["--source", str(video), "--no-display", "--checkpoint", str(ckpt), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --")
    assert video.read_bytes() == before and not (tmp_path / "o.mkv").exists()


def test_file_names_that_are_not_utf8_give_strict_json(tmp_path, ckpt):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), digit_frame("7"))
    os.rename(photos / "a.png", os.path.join(os.fsencode(photos), b"caf\xe9.png"))  # a Latin-1 name
    code = camera_inferencer.main(["--source", str(photos), "--no-display", "--checkpoint", str(ckpt),
                                   "--jsonl", str(tmp_path / "o.jsonl")])
    text = (tmp_path / "o.jsonl").read_bytes().decode("utf-8")  # strict UTF-8
    assert code == 0 and json.loads(text)["source"].endswith("caf\ufffd.png") and "\\ud" not in text


def test_a_qt_platform_opencv_lacks_is_exit_2_not_an_abort(tmp_path, monkeypatch, capsys):
    from backend.live.app import qt_platforms

    found = qt_platforms()
    if found is None or "offscreen" in found:
        pytest.skip("this OpenCV's Qt has an offscreen platform (or its plugins cannot be listed)")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    cv2.imwrite(str(tmp_path / "a.png"), digit_frame("7"))
    assert camera_inferencer.main(["--source", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "QT_QPA_PLATFORM=offscreen" in err and err.count("\n") == 1


def test_odd_flags_are_tamed_or_refused(tmp_path, capsys):
    assert camera_inferencer.parse_args(["--threads", "5000"]).threads == os.cpu_count()
    assert "more than the" in capsys.readouterr().err
    assert camera_inferencer.main(["--source", "", "--no-display"]) == 2  # not the current folder
    missing = tmp_path / "no_data"
    assert camera_inferencer.main(["--source", "demo", "--no-display", "--data-dir", str(missing)]) == 2
    assert not missing.exists() and "no such folder" in capsys.readouterr().err


def test_a_folder_recording_is_not_shaped_by_its_first_image(tmp_path, ckpt):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a_dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(photos / "b_strip.png"), np.full((200, 10000, 3), 235, np.uint8))
    cv2.imwrite(str(photos / "c_page.png"), digit_frame("5", size=(640, 480)))
    out = tmp_path / "photos.mkv"
    assert camera_inferencer.main(["--source", str(photos), "--no-display", "--checkpoint", str(ckpt),
                                   "--record", str(out)]) == 0
    n, w, h, _ = video_info(out)
    assert n == 3 and w >= 640 and h >= 480  # the page is recorded at full size, not squashed to 1x1
