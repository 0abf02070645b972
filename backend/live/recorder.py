"""Writing results: the annotated video and the JSONL log, both safe to interrupt.

``VideoRecorder`` is a context manager that always releases its writer, so the file is finalised
and playable whatever ends the run. When no frame rate is given it measures the real one over the
first second of frames (held in memory until then) instead of guessing, so a recording of a
camera running at 12 FPS plays back at the speed it happened. ``JsonlWriter`` writes one complete
line per frame and flushes it, so a log cut short by a signal never ends in half a record.

Recordings default to Matroska (.mkv, MJPG): a hard kill (SIGKILL, out of memory) leaves every
frame written up to it playable, where an .mp4 without its final index plays nothing. Both
writers stop with an OutputError (exit code 3) while `RESERVE_BYTES` are still free on the disk,
so the video can still be finalised; a JSONL write that fails anyway is cut back to its last whole
line.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from backend.errors import OutputError, UserError
from backend.live.quiet import quiet_opencv

FALLBACK_FPS = 30.0
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
RECORD_EXT = ".mkv"  # the r key's recordings: playable after a hard kill (measured: .mp4 0 frames)
RESERVE_BYTES = 16 << 20  # writing stops with this much left, enough to finalise the video


def check_space(path: Path, kept: str = "") -> None:
    """OutputError when the disk holding `path` has under RESERVE_BYTES free (`kept`: what the
    message adds on what was kept). A file system that cannot tell its free space is not checked."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if free < RESERVE_BYTES:
        raise OutputError(f"disk full ({free >> 20} MB left on the disk of {path}); stopped{kept}")


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`frame` scaled to fit inside `size` (width, height), centred on black."""
    w, h = size
    scale = min(w / frame.shape[1], h / frame.shape[0])
    fw, fh = max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - fw) // 2, (h - fh) // 2
    out[y:y + fh, x:x + fw] = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
    return out


class VideoRecorder:
    """Annotated frames -> a video file.

    path: .mkv (MJPG, survives a hard kill), .avi (MJPG) or .mp4 (mp4v, unplayable after a hard
    kill). fps: the rate to write at; None measures it over the first `measure_s` seconds (at most
    `measure_frames` frames), falling back to `fallback_fps`. Frames are BGR uint8; `size`
    (width, height) is the video's, else the first frame's; frames of another size are scaled to
    fit inside it, keeping their shape, on black bars. A disk running full raises OutputError
    (the file stays playable up to the last frame written).
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, fallback_fps: float | None = None,
                 measure_s: float = 1.0, measure_frames: int = 30, size: tuple[int, int] | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in FOURCC:
            raise UserError(f"cannot record to {path}: use a .mp4, .avi or .mkv file name")
        self.fps = fps
        self.fallback_fps = fallback_fps or FALLBACK_FPS
        self.measure_s = measure_s
        self.measure_frames = measure_frames
        self.size = size  # (width, height)
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._pending: list[np.ndarray] = []
        self._times: list[float] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot record to {path}: {e.strerror or e}") from None
        if not os.access(self.path.parent, os.W_OK):
            raise UserError(f"cannot record to {path}: folder is not writable")

    def __enter__(self) -> "VideoRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def frames(self) -> int:
        """Frames accepted so far (written or waiting for the rate to be measured)."""
        return self.frames_written + len(self._pending)

    def write(self, frame: np.ndarray) -> None:
        check_space(self.path)
        if self.size is None:
            self.size = (frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != self.size:
            frame = letterbox(frame, self.size)
        if self._writer is None:
            self._pending.append(frame.copy())
            self._times.append(time.monotonic())
            if self.fps or len(self._pending) >= self.measure_frames or \
                    self._times[-1] - self._times[0] >= self.measure_s:
                self._open()
            return
        self._writer.write(frame)
        self.frames_written += 1

    def _measured_fps(self) -> float:
        if self.fps:
            return float(self.fps)
        if len(self._times) >= 3 and self._times[-1] > self._times[0]:
            rate = (len(self._times) - 1) / (self._times[-1] - self._times[0])
            # Whole numbers: MPEG-4 refuses time bases with a denominator over 65535.
            return float(np.clip(round(rate), 1, 120))
        return self.fallback_fps

    def _open(self) -> None:
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
        rate = self._measured_fps()
        for fps in dict.fromkeys((rate, float(max(1, round(rate))), FALLBACK_FPS)):  # odd source rates, then 30
            with quiet_opencv():
                self._writer = cv2.VideoWriter(str(self.path), fourcc, fps, self.size)
            if self._writer.isOpened():
                self.fps = fps
                break
        else:
            self._writer = None
            self._pending.clear()
            raise UserError(f"cannot record to {self.path}: OpenCV could not open a video writer")
        for f in self._pending:
            self._writer.write(f)
        self.frames_written += len(self._pending)
        self._pending.clear()

    def close(self) -> None:
        """Write what is pending and finalise the file. Safe to call twice."""
        try:
            if self._writer is None and self._pending:
                self._open()
        finally:
            if self._writer is not None:
                self._writer.release()
                self._writer = None


def next_numbered_path(folder: str | os.PathLike, stem: str, ext: str) -> Path:
    """folder/stem_001.ext, or the first number after the highest one already there."""
    folder = Path(folder)
    pat = re.compile(rf"{re.escape(stem)}_(\d+){re.escape(ext)}$")
    used = [int(m.group(1)) for p in folder.glob(f"{stem}_*{ext}") if (m := pat.match(p.name))] \
        if folder.is_dir() else []
    return folder / f"{stem}_{max(used, default=0) + 1:03d}{ext}"


def json_line(record: dict) -> bytes:
    """`record` as one line of strict UTF-8 JSON. File names that are not valid UTF-8 reach Python
    as lone surrogates, which strict JSON parsers refuse; their bytes become U+FFFD instead."""
    text = json.dumps(record, separators=(", ", ": "), ensure_ascii=False) + "\n"
    try:
        data = text.encode("utf-8", "surrogateescape")  # undecodable bytes back as they were...
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return data.decode("utf-8", "replace").encode("utf-8")  # ...then shown as U+FFFD


class JsonlWriter:
    """One JSON object per line, each written whole by one unbuffered write."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "wb", buffering=0)
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}") from None
        self.records = 0
        self._size = 0  # bytes of whole lines written
        self._on_disk = self.path.is_file()  # not a pipe or a device: its free space is watched

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, record: dict) -> None:
        # One unbuffered write of the whole line: a signal can only land between lines. A write
        # that fails half-way (disk full) is cut back to the last whole line.
        kept = f": {self.path} holds {self.records} whole records"
        if self._on_disk:
            check_space(self.path, kept)
        line = json_line(record)
        data = memoryview(line)
        try:
            while data:
                data = data[self._fh.write(data):]
        except OSError as e:
            with contextlib.suppress(OSError):
                self._fh.truncate(self._size)
            raise OutputError(f"cannot write {self.path} ({e.strerror or e}); stopped{kept}") from None
        self._size += len(line)
        self.records += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
