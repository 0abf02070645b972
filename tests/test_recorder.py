"""Recorder and JSONL writer: files are finalised and complete whatever ends the writing."""
from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest

from app_fakes import video_info
from backend.errors import OutputError, UserError
from backend.live.recorder import RESERVE_BYTES, JsonlWriter, VideoRecorder, letterbox, next_numbered_path


def frames(n: int, size=(160, 120)):
    return [np.full((size[1], size[0], 3), (20 + 7 * i) % 256, np.uint8) for i in range(n)]


@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "out.mkv"])
def test_recording_opens_with_every_frame_at_its_size_and_rate(tmp_path, name):
    with VideoRecorder(tmp_path / name, fps=12) as rec:
        for f in frames(15):
            rec.write(f)
    assert video_info(tmp_path / name)[:3] == (15, 160, 120)
    assert video_info(tmp_path / name)[3] == pytest.approx(12, abs=0.5)


def test_recording_is_finalised_when_the_writing_loop_raises(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError):
        with VideoRecorder(path) as rec:  # rate measured: the first frames wait in memory
            for i, f in enumerate(frames(40)):
                if i == 25:
                    raise RuntimeError("camera lost")
                rec.write(f)
    assert video_info(path)[:3] == (25, 160, 120)


def test_measured_rate_falls_back_when_too_few_frames(tmp_path):
    with VideoRecorder(tmp_path / "two.mp4", fallback_fps=24) as rec:
        for f in frames(2):
            rec.write(f)
    assert rec.fps == 24 and video_info(tmp_path / "two.mp4")[0] == 2


def test_frames_of_another_size_are_fitted_to_the_first(tmp_path):
    with VideoRecorder(tmp_path / "sizes.mp4", fps=10) as rec:
        for f in frames(3) + frames(3, size=(320, 200)) + frames(3, size=(80, 60)):
            rec.write(f)
    assert video_info(tmp_path / "sizes.mp4")[:3] == (9, 160, 120)


def test_a_frame_of_another_shape_keeps_its_shape_on_black_bars():
    wide = np.full((50, 200, 3), 255, np.uint8)  # 4:1 into 160x120 -> 160x40, bars above and below
    out = letterbox(wide, (160, 120))
    assert out.shape == (120, 160, 3)
    rows = np.flatnonzero(out[:, 80, 0] > 128)
    assert rows.min() == 40 and rows.max() == 79 and out[:40].max() == 0 and out[80:].max() == 0


def test_close_twice_and_empty_recording_are_harmless(tmp_path):
    rec = VideoRecorder(tmp_path / "none.mp4")
    rec.close()
    rec.close()
    assert rec.frames == 0


def test_bad_recording_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"\.mp4"):
        VideoRecorder(tmp_path / "out.gif")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot record"):
        VideoRecorder(tmp_path / "file" / "out.mp4")


def test_numbered_paths_count_up(tmp_path):
    assert next_numbered_path(tmp_path / "new", "rec", ".mp4").name == "rec_001.mp4"
    (tmp_path / "rec_001.mp4").touch()
    (tmp_path / "rec_007.mp4").touch()
    (tmp_path / "rec_x.mp4").touch()
    assert next_numbered_path(tmp_path, "rec", ".mp4").name == "rec_008.mp4"


def test_jsonl_lines_are_complete_and_flushed_as_written(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonlWriter(path) as log:
        for i in range(3):
            log.write({"frame": i, "detections": []})
            # Readable line by line while the writer is still open: flushed per record.
            lines = path.read_text().splitlines()
            assert [json.loads(l)["frame"] for l in lines] == list(range(i + 1))
    assert log.records == 3


def test_jsonl_into_an_unwritable_place_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        JsonlWriter(tmp_path / "file" / "log.jsonl")


@pytest.mark.parametrize("fps", [82.157, 29.97, 119.88])
def test_odd_source_rates_still_record(tmp_path, fps):
    with VideoRecorder(tmp_path / "odd.mp4", fps=fps) as rec:
        for f in frames(4):
            rec.write(f)
    assert video_info(tmp_path / "odd.mp4")[0] == 4


def test_jsonl_on_a_full_disk_stops_with_exit_code_3(tmp_path):
    log = JsonlWriter("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(OutputError, match="No space left") as e:
        log.write({"frame": 0})
    assert e.value.code == 3 and "0 whole records" in str(e.value) and "\n" not in str(e.value)


def test_a_jsonl_write_that_fails_half_way_is_cut_back_to_whole_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlWriter(path)
    log.write({"frame": 0})
    real = log._fh

    class FillsUp:  # the disk takes half the next line, then is full
        def write(self, data):
            real.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def truncate(self, size):
            return real.truncate(size)

    log._fh = FillsUp()
    with pytest.raises(OutputError, match="1 whole records"):
        log.write({"frame": 1, "detections": [{"digit": 7}] * 20})
    log._fh = real
    log.close()
    assert path.read_text() == '{"frame": 0}\n'


def test_recording_stops_while_the_disk_can_still_finalise_it(tmp_path, monkeypatch):
    path = tmp_path / "out.mkv"
    left = iter([RESERVE_BYTES * 10] * 12 + [RESERVE_BYTES // 2] * 100)  # free space as the disk fills up
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 40, 0, next(left)))
    with pytest.raises(OutputError, match="disk full") as e:
        with VideoRecorder(path, fps=10) as rec:
            for f in frames(30):
                rec.write(f)
    monkeypatch.undo()
    assert e.value.code == 3 and video_info(path)[:3] == (12, 160, 120)


def test_names_that_are_not_utf8_still_give_strict_json(tmp_path):
    name = os.fsdecode(b"/photos/caf\xe9.jpg")  # Latin-1 bytes: a lone surrogate in Python
    path = tmp_path / "log.jsonl"
    with JsonlWriter(path) as log:
        log.write({"source": name, "numbers": ["7"]})
    text = path.read_bytes().decode("utf-8")  # strict: raises on anything but valid UTF-8
    assert "\\ud" not in text and json.loads(text)["source"] == "/photos/caf\ufffd.jpg"


def test_a_given_video_size_holds_frames_of_any_shape(tmp_path):
    with VideoRecorder(tmp_path / "fixed.mkv", fps=10, size=(320, 240)) as rec:
        rec.write(np.full((1, 1, 3), 255, np.uint8))  # a 1x1 first frame does not set the size
        rec.write(np.full((20, 1000, 3), 255, np.uint8))
    assert video_info(tmp_path / "fixed.mkv")[:3] == (2, 320, 240)
