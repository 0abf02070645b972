"""The loop and the CLI, headless: recordings, JSONL records, sources of every kind, bad flags."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import camera_inferencer
from scenes import StandInScene
from app_fakes import FakeWindow, ListSource, digit_frame, video_info, write_video
from backend.live.app import AppConfig, run_app
from backend.errors import SourceError
from backend.live.overlay import OverlayConfig
from backend.live.sources import DemoSource, FolderSource

KEYS = {"frame", "source", "time_ms", "detections", "numbers"}




def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def moving_frames(n: int, size=(320, 240)):
    return [digit_frame("2024", size=size, shift=i % 4, seed=i) for i in range(n)]


def test_headless_run_records_every_frame_and_one_record_per_frame(tmp_path, pipeline):
    cfg = AppConfig(display=False, record=str(tmp_path / "out.mp4"), jsonl=str(tmp_path / "out.jsonl"))
    summary = run_app(ListSource(moving_frames(12), name="clip.mp4"), pipeline, cfg)
    assert summary.frames == 12 and summary.end == "end of input"
    assert video_info(tmp_path / "out.mp4")[:3] == (12, 320, 240)
    recs = read_jsonl(tmp_path / "out.jsonl")
    assert [r["frame"] for r in recs] == list(range(12))
    assert all(set(r) == KEYS and r["source"] == "clip.mp4" for r in recs)
    dets = [d for r in recs for d in r["detections"]]
    assert dets and all(len(d["box"]) == 4 and len(d["probs"]) == 10 and "track_id" in d for d in dets)
    # A video's digits show once confirmed (seen in min_hits frames) and keep their track ids.
    first = cfg.tracker.min_hits - 1
    assert not any(r["detections"] for r in recs[:first])
    assert {d["track_id"] for d in recs[first]["detections"]} == {d["track_id"] for d in recs[-1]["detections"]}




def test_max_frames_stops_an_endless_source(tmp_path, pipeline):
    cfg = AppConfig(display=False, max_frames=7, jsonl=str(tmp_path / "demo.jsonl"))
    summary = run_app(DemoSource(scene=StandInScene()), pipeline, cfg)
    assert summary.frames == 7 and len(read_jsonl(tmp_path / "demo.jsonl")) == 7


def test_source_failing_mid_run_leaves_a_playable_recording(tmp_path, pipeline):
    cfg = AppConfig(display=False, record=str(tmp_path / "out.avi"), jsonl=str(tmp_path / "out.jsonl"))
    with pytest.raises(SourceError, match="finalised \\(6 frames\\)") as e:
        run_app(ListSource(moving_frames(6), fail="raise"), pipeline, cfg)
    assert e.value.code == 1
    assert video_info(tmp_path / "out.avi")[:3] == (6, 320, 240)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 6


def test_changing_frame_sizes_are_reported_and_recorded_at_the_first_size(tmp_path, pipeline):
    frames = moving_frames(3) + moving_frames(3, size=(640, 360)) + moving_frames(2, size=(160, 120))
    warnings = []
    cfg = AppConfig(display=False, record=str(tmp_path / "out.mp4"))
    run_app(ListSource(frames), pipeline, cfg, warn=warnings.append)
    assert video_info(tmp_path / "out.mp4")[:3] == (8, 320, 240)
    assert sum("frame size changed" in w for w in warnings) == 2


class ShapeSpy:
    """Wraps a pipeline and remembers the frame sizes it was given."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []

    def process(self, frame, **kw):
        self.shapes.append(frame.shape)
        return self.inner.process(frame, **kw)


def test_enormous_frames_are_capped_and_boxes_map_back_to_the_original(tmp_path, pipeline):
    big = cv2.resize(digit_frame("7", size=(400, 400)), (8000, 8000), interpolation=cv2.INTER_NEAREST)
    spy = ShapeSpy(pipeline)
    cfg = AppConfig(display=False, max_side=1000, jsonl=str(tmp_path / "big.jsonl"), track=False)
    run_app(ListSource([big], fps=None), spy, cfg)
    assert spy.shapes == [(1000, 1000, 3)]
    boxes = [d["box"] for d in read_jsonl(tmp_path / "big.jsonl")[0]["detections"]]
    assert boxes and max(b[0] + b[2] for b in boxes) > 1000  # in 8000x8000 pixels


# --- the command line ----------------------------------------------------------------------------

@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, text in (("b.png", "12"), ("a.png", "7"), ("c.jpg", "90")):
        cv2.imwrite(str(folder / name), digit_frame(text))
    write_video(tmp_path / "clip.avi", moving_frames(5))
    return tmp_path


def cli(args, ckpt):
    return camera_inferencer.main([*args, "--checkpoint", str(ckpt), "--device", "cpu"])


@pytest.mark.parametrize("kind", ["image", "folder", "video"])
def test_headless_cli_writes_one_record_per_frame(media, ckpt, kind, capsys):
    src = {"image": media / "shots" / "b.png", "folder": media / "shots", "video": media / "clip.avi"}[kind]
    out = media / "out.jsonl"
    assert cli(["--source", str(src), "--no-display", "--jsonl", str(out)], ckpt) == 0
    recs = read_jsonl(out)
    expected = {"image": [str(src)], "folder": [str(media / "shots" / n) for n in ("a.png", "b.png", "c.jpg")],
                "video": [str(src)] * 5}[kind]
    assert [r["source"] for r in recs] == expected
    assert [r["frame"] for r in recs] == list(range(len(expected)))
    assert all(set(r) == KEYS for r in recs)


@pytest.mark.parametrize("args, message", [
    (["--source", "nope.png"], "no such file"),
    (["--source", "shots/../clip.avi.missing"], "no such file"),
    (["--source", "empty"], "no images in folder"),
    (["--source", "junk.png"], "cannot read image"),
    (["--source", "junk.mp4"], "cannot read video"),
    (["--source", "shots", "--record", "out.gif"], ".mp4"),
])
def test_bad_inputs_give_one_line_and_exit_2(media, ckpt, args, message, capsys, monkeypatch):
    monkeypatch.chdir(media)
    (media / "empty").mkdir()
    (media / "junk.png").write_bytes(b"\x89PNG garbage")
    (media / "junk.mp4").write_bytes(b"\x00" * 100)
    assert cli([*args, "--no-display"], ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


@pytest.mark.parametrize("args", [
    ["--max-frames", "-1"], ["--max-frames", "0"], ["--width", "-640"], ["--height", "abc"], ["--fps", "0"],
    ["--fps", "nan"], ["--max-side", "0"], ["--device", "tpu"], ["--draw", "--no-display"], ["--bogus"],
    ["--min-confidence", "1.5"], ["--min-confidence", "x"], ["--work-size", "0"], ["--max-digits", "-3"],
])
def test_bad_flags_exit_2_with_argparse_message(args, capsys):
    with pytest.raises(SystemExit) as e:
        camera_inferencer.parse_args(args)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_no_display_gives_one_line_suggesting_no_display(media, ckpt, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert cli(["--source", str(media / "shots" / "a.png")], ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-display" in err[0]


def test_help_and_the_help_overlay_document_every_key(capsys):
    from backend.live.app import KEYS
    from backend.live.overlay import HELP_LINES

    with pytest.raises(SystemExit):
        camera_inferencer.parse_args(["--help"])
    text = capsys.readouterr().out
    section = text[text.index("keys (in the window):"):text.index("exit codes")]
    overlay = " ".join(k for k, _ in HELP_LINES)
    names = {27: "Esc", ord(" "): "space"}
    keys = {names.get(code, chr(code).lower()) for code in KEYS}
    assert len(keys) >= 11
    for key in keys:
        word = re.compile(rf"(?<![\w-]){re.escape(key)}(?![\w-])")
        assert word.search(section), f"--help does not list {key!r}"
        assert word.search(overlay), f"the help overlay does not list {key!r}"


def test_reading_flags_reach_the_pipeline(media, ckpt, monkeypatch):
    seen = {}
    monkeypatch.setattr("backend.live.app.run_app", lambda source, pipeline, cfg, **kw: seen.setdefault("p", pipeline))
    monkeypatch.setattr("backend.live.app.describe", lambda summary: "")
    cli(["--source", str(media / "shots"), "--no-display", "--min-confidence", "0.8", "--work-size", "960",
         "--max-digits", "12", "--backend", "torch", "--threads", "1", "--precision", "fp32"], ckpt)
    cfg = seen["p"].cfg
    assert (cfg.min_confidence, cfg.detect.work_size, cfg.detect.max_digits) == (0.8, 960, 12)
    rec = seen["p"].recognizer
    assert (rec.backend, rec.threads, rec.amp_dtype) == ("torch", 1, None)


@pytest.mark.parametrize("args, hint", [
    (["--source", "demo"], "--no-display"),
    (["--draw"], "--source photo.jpg --no-display"),
])
def test_no_display_is_reported_before_the_model_loads(ckpt, args, hint, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)

    def no_model(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("backend.model.recognizer.Recognizer", no_model)
    assert cli(args, ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and hint in err[0]
    assert "--draw" not in args or "run with --no-display" not in err[0]  # --draw refuses --no-display


def test_missing_checkpoint_is_reported_before_the_model_loads(tmp_path, capsys, monkeypatch):
    def no_model(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("backend.model.recognizer.Recognizer", no_model)
    assert camera_inferencer.main(["--source", "demo", "--no-display", "--checkpoint", str(tmp_path / "no.pt")]) == 2
    assert capsys.readouterr().err == f"error: checkpoint not found: {tmp_path / 'no.pt'}\n"


def test_list_cameras_prints_what_opens_and_exits_0(monkeypatch, capsys):
    import numpy as np

    class FakeCapture:
        def __init__(self, i):
            self.i = i

        def isOpened(self):
            return self.i in (0, 2)

        def read(self):
            return (True, np.zeros((480, 640, 3), np.uint8)) if self.i == 0 else (False, None)

        def release(self):
            pass

    import backend.live.sources as sources

    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    assert sources.list_cameras(open_capture=FakeCapture) == [(0, 640, 480)]
    assert camera_inferencer.main(["--list-cameras"]) == 0
    assert capsys.readouterr().out.startswith("0: 640x480")


# --- the windowed loop, driven by a fake window ----------------------------------------------------

def test_window_keys_drive_the_loop(tmp_path, pipeline):
    cfg = AppConfig(jsonl=str(tmp_path / "out.jsonl"), recordings_dir=str(tmp_path / "rec"),
                    snapshots_dir=str(tmp_path / "snap"), overlay=OverlayConfig())
    keys = [".", " ", ".", ".", " ", "a", "m", "d", "h", "r", ".", ".", "r", "s", "h", "q"]
    window = FakeWindow(keys)
    summary = run_app(ListSource(moving_frames(30)), pipeline, cfg, window=window)
    assert summary.end == "quit" and window.closed and not window.keys
    # Paused after the second frame for three images: 16 images shown, 13 of them new frames.
    assert summary.frames == 13 and len(read_jsonl(tmp_path / "out.jsonl")) == 13
    assert np.array_equal(window.shown[2][60:], window.shown[1][60:])  # the same frame (the HUD aside)
    ov = cfg.overlay
    assert (ov.attention, ov.inset, ov.debug, ov.help) == (False, False, True, False)
    # d shows the threshold mask instead of the frame; h laid the help panel over it.
    assert np.abs(window.shown[7].astype(int) - window.shown[6]).mean() > 20
    assert not np.array_equal(window.shown[8], window.shown[9])
    # r ... r recorded the three frames shown in between; s saved the frame on screen.
    [(path, frames)] = summary.recorded
    assert Path(path).parent == tmp_path / "rec" and frames == 3 and video_info(Path(path))[0] == 3
    snap = cv2.imread(str(tmp_path / "snap" / "snap_001.png"))
    assert snap is not None and snap.shape == (240, 320, 3)


def test_a_folder_in_a_window_steps_through_its_images_at_their_own_sizes(tmp_path, pipeline):
    folder = tmp_path / "shots"
    folder.mkdir()
    sizes = {"a.png": (320, 240), "b.png": (480, 200), "c.png": (200, 300)}
    for name, size in sizes.items():
        cv2.imwrite(str(folder / name), digit_frame("12", size=size))
    window = FakeWindow([".", ".", "n", "p", "n", "n", "n", ".", "p", "q"])
    cfg = AppConfig(jsonl=str(tmp_path / "out.jsonl"))
    summary = run_app(FolderSource(folder), pipeline, cfg, window=window)
    names = [Path(r["source"]).name for r in read_jsonl(tmp_path / "out.jsonl")]
    assert names == ["a.png", "b.png", "a.png", "b.png", "c.png", "b.png"] and summary.end == "quit"
    # Each image waits for a key; at the end the last one stays until q.
    shown_sizes = [(img.shape[1], img.shape[0]) for img in window.shown]
    assert shown_sizes[:3] == [sizes["a.png"]] * 3
    assert shown_sizes[6:8] == [sizes["c.png"]] * 2 and shown_sizes[-1] == sizes["b.png"]


def test_raw_recording_holds_the_frames_without_the_overlay(tmp_path, pipeline):
    frames = moving_frames(6)
    cfg = AppConfig(display=False, record=str(tmp_path / "shown.avi"), record_raw=str(tmp_path / "raw.avi"))
    run_app(ListSource(frames), pipeline, cfg)

    def first(path):
        cap = cv2.VideoCapture(str(path))
        ok, img = cap.read()
        cap.release()
        return img.astype(int)

    assert video_info(tmp_path / "raw.avi")[:3] == (6, 320, 240)
    # The top left corner, where the HUD goes: raw differs only by JPEG's loss.
    raw, shown = (np.abs(first(tmp_path / name) - frames[0])[:30, :150].mean() for name in ("raw.avi", "shown.avi"))
    assert raw < 5 and shown > 20


def test_a_live_source_is_recorded_at_the_rate_it_ran_at(tmp_path, pipeline):
    cfg = AppConfig(display=False, record=str(tmp_path / "out.avi"), max_frames=8)
    run_app(ListSource(moving_frames(8), fps=30.0, live=True, delay=0.1), pipeline, cfg)
    assert video_info(tmp_path / "out.avi")[3] <= 10  # one frame every 0.1 s at best, not the source's 30
