"""The live loop: source -> Pipeline -> tracking -> overlay -> window / recorder / JSONL.

``run_app`` drives any source that reads like cv2.VideoCapture, with or without a window, and
guarantees that whatever ends the run (q, the window closed, Ctrl+C, SIGTERM, end of input, a lost
camera, an exception) the recording is finalised and the JSONL holds only complete lines.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import cv2
import numpy as np

from backend.errors import SourceError, UserError, warn_stderr
from backend.live.overlay import HudInfo, OverlayConfig, draw_overlay
from backend.frame.detections import Detections
from backend.frame.pipeline import FrameResult, Pipeline, frame_record
from backend.frame.reading import Reading, reading_order
from backend.live.recorder import JsonlWriter, VideoRecorder, next_numbered_path
from backend.live.sources import MAX_SIDE, LiveCapture, prepare_frame
from backend.live.tracking import Tracker, TrackerConfig


KEY_QUIT = (ord("q"), ord("Q"), 27)
STATUS_S = 2.5  # how long a status message stays on screen
MAX_BAD_FRAMES = 30  # consecutive undecodable frames before a source counts as failed


class Interrupted(Exception):
    """A signal asked the run to stop (SIGINT, SIGTERM, SIGHUP)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class AppConfig:
    display: bool = True  # open a window (False: headless, for servers and tests)
    max_frames: int | None = None  # stop after this many frames
    record: str | None = None  # record the annotated video from the start into this file
    jsonl: str | None = None  # one JSON record per frame into this file
    track: bool | None = None  # track and smooth readings; None: for live sources and videos only
    max_side: int = MAX_SIDE  # frames larger than this (longer side) are downscaled first
    recordings_dir: str = "recordings"  # where the r key's numbered recordings go
    snapshots_dir: str = "snapshots"  # where the s key's PNGs go
    window: str = "Digits Transformer"
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    hold_last: bool = True  # with a window, keep the last frame of a finite source until q


@dataclass
class RunSummary:
    frames: int = 0  # frames processed
    recorded: list[tuple[str, int]] = field(default_factory=list)  # (file, frames) per recording
    jsonl_records: int = 0
    fps: float = 0.0  # mean frames per second of the loop
    end: str = ""  # what ended the run


# --- display -------------------------------------------------------------------------------

def display_problem() -> str | None:
    """Why a window cannot open here, or None. Checked before OpenCV's Qt backend, which aborts
    the whole process (losing the recording) when it cannot reach a display."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM", "").startswith("offscreen"):
        return None
    disp = os.environ.get("DISPLAY", "")
    if not disp:
        return "no display to open a window on (DISPLAY is not set)"
    if not _x_display_reachable(disp):
        return f"cannot connect to display {disp}"
    return None


def _x_display_reachable(disp: str) -> bool:
    host, _, rest = disp.rpartition(":")
    if host.startswith("/"):  # a launchd socket path (XQuartz)
        return True
    try:
        number = int(rest.split(".")[0])
    except ValueError:
        return False
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                try:
                    s.connect(f"/tmp/.X11-unix/X{number}")
                except OSError:
                    s.connect(f"\0/tmp/.X11-unix/X{number}")  # Linux abstract socket
            return True
        with socket.create_connection((host, 6000 + number), timeout=0.5):
            return True
    except OSError:
        return False


class Window:
    """The OpenCV window: frames in, keys and closing out."""

    def __init__(self, name: str, on_mouse: Callable | None = None):
        problem = display_problem()
        if problem:
            raise UserError(f"{problem}; run with --no-display (add --record OUT.mp4 or --jsonl OUT.jsonl)")
        self.name = name
        try:
            cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as e:
            raise UserError(f"cannot open a window ({str(e).strip().splitlines()[-1][:120]}); "
                            "run with --no-display") from None
        if on_mouse is not None:
            cv2.setMouseCallback(name, on_mouse)
        self.shown = False

    def show(self, img: np.ndarray) -> int:
        """Show an image; returns the key pressed (-1 for none, 27 also when the window was closed)."""
        cv2.imshow(self.name, img)
        key = cv2.waitKey(1)
        if self.shown and cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1:
            return 27
        self.shown = True
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)


# --- signals -------------------------------------------------------------------------------

@contextlib.contextmanager
def signals_raise() -> Iterator[list[int]]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` in the main thread while the loop runs,
    so the `with` blocks that finalise the recording get to run.

    A first signal is only noted in the yielded list; the loop raises it at the next frame
    boundary, so a frame is never in the video but not in the JSONL. A second one raises at once.
    """
    import threading

    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def handler(signum, _frame):
        if pending:
            raise Interrupted(signum)
        pending.append(signum)

    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield pending
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --- records --------------------------------------------------------------------------------

def make_record(frame_index: int, source: str, result: FrameResult, time_ms: float, scale: float = 1.0) -> dict:
    """The JSONL object of one frame (the headless CLI's format), boxes in pixels of the original
    frame (`scale` is what prepare_frame applied); a tracked result adds a "track_id" per detection."""
    rec = frame_record(frame_index, source, result, time_ms)
    ids = result.detections.track_ids
    for i, det in enumerate(rec["detections"]):
        if scale != 1.0:
            det["box"] = [int(round(v / scale)) for v in det["box"]]
        if ids is not None:
            det["track_id"] = int(ids[i])
    return rec


def in_reading_order(dets: Detections, reading: Reading | None = None) -> tuple[Detections, list[str], list[str]]:
    """Detections -> the same in reading order, the numbers their labels spell, and those numbers
    line by line (one string per line of writing). `reading` is the pipeline's own, when the
    detections are the pipeline's, already in that order; tracked ones (smoothed labels) are
    read again."""
    if reading is None:
        reading = reading_order(dets.boxes, dets.digits)
        dets = dets.select(reading.order)
    lines = [" ".join(reading.numbers[k] for k in line) for line in reading.lines]
    return dets, reading.numbers, lines


# --- the loop -------------------------------------------------------------------------------

class Outputs:
    """The recorder (which the r key swaps) and the JSONL writer; `close()` finalises both."""

    def __init__(self, cfg: AppConfig, fixed_fps: float | None, fallback_fps: float | None):
        self.cfg = cfg
        self.fixed_fps, self.fallback_fps = fixed_fps, fallback_fps
        self.recorder: VideoRecorder | None = None
        self.jsonl: JsonlWriter | None = None
        self.recorded: list[tuple[str, int]] = []

    def start_recording(self, path: str | os.PathLike | None = None) -> VideoRecorder:
        path = path or next_numbered_path(self.cfg.recordings_dir, "rec", ".mp4")
        self.recorder = VideoRecorder(path, fps=self.fixed_fps, fallback_fps=self.fallback_fps)
        return self.recorder

    def stop_recording(self) -> tuple[str, int] | None:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return None
        rec.close()
        self.recorded.append((str(rec.path), rec.frames_written))
        return self.recorded[-1]

    def close(self) -> None:
        try:
            self.stop_recording()
        finally:
            if self.jsonl is not None:
                self.jsonl.close()


def _read(source) -> tuple[bool, np.ndarray | None]:
    try:
        return source.read()
    except (SourceError, Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # a capture backend that raised: the source is lost
        name = getattr(source, "name", "source")
        raise SourceError(f"{name} failed: {type(e).__name__}: {str(e).strip()[:120]}") from None


def run_app(source, pipeline: Pipeline, cfg: AppConfig, warn: Callable[[str], None] | None = None,
            device: str = "", model: str = "") -> RunSummary:
    """Run the loop until the source ends, max_frames, q/Esc or a signal; returns what was done.

    Raises SourceError when a source fails mid-run (after finalising every output) and
    Interrupted on a signal (likewise). The caller releases the source.
    """
    warn = warn or warn_stderr
    live = bool(getattr(source, "live", False))
    track = cfg.track if cfg.track is not None else (live or getattr(source, "fps", None) is not None)
    tracker = Tracker(cfg.tracker) if track else None
    fixed_fps = None if isinstance(source, LiveCapture) else getattr(source, "fps", None)
    outputs = Outputs(cfg, fixed_fps, getattr(source, "fps", None))
    summary = RunSummary()
    ov = cfg.overlay
    hud = HudInfo(device=device, model=model)
    window: Window | None = None
    paused = finished = False
    last: tuple | None = None  # (frame, dets, lines, result) of the frame shown
    status_until = 0.0
    shape = None
    bad = 0
    t_start = time.perf_counter()
    t_prev = None

    def set_status(text: str) -> None:
        nonlocal status_until
        hud.status = text
        status_until = time.monotonic() + STATUS_S

    with contextlib.ExitStack() as stack, signals_raise() as signalled:
        stack.callback(outputs.close)
        if cfg.display:
            window = Window(cfg.window, getattr(source, "on_mouse", None))
            stack.callback(window.close)
        if cfg.jsonl:
            outputs.jsonl = JsonlWriter(cfg.jsonl)
        if cfg.record:
            outputs.start_recording(cfg.record)
        try:
            while True:
                if signalled:
                    raise Interrupted(signalled[0])
                if cfg.max_frames is not None and summary.frames >= cfg.max_frames:
                    summary.end = "max frames"
                    break
                if window is not None:
                    hud.recording = outputs.recorder.path.name if outputs.recorder is not None else None
                    hud.paused = paused
                    if time.monotonic() > status_until:
                        hud.status = ""
                shown = None  # this pass's overlay, drawn only when a window or a recording takes it
                if not paused and not finished:
                    ok, raw = _read(source)
                    if not ok:
                        if window is not None and cfg.hold_last and last is not None:
                            finished = True
                            set_status("end of input - q to quit")
                            status_until = float("inf")
                        else:
                            summary.end = "end of input"
                            break
                    else:
                        try:
                            frame, scale = prepare_frame(raw, cfg.max_side)
                        except ValueError as e:
                            bad += 1
                            if bad == 1:
                                warn(f"unusable frame from {getattr(source, 'name', 'source')} ({e}); skipping")
                            if bad >= MAX_BAD_FRAMES:
                                raise SourceError(f"{getattr(source, 'name', 'source')} delivers no usable frames "
                                                  f"({e})") from None
                            continue
                        bad = 0
                        if tracker is not None and shape is not None and frame.shape != shape:
                            # A stream that changes size mid-run (a folder of photos may well do so).
                            warn(f"frame size changed from {shape[1]}x{shape[0]} to {frame.shape[1]}x{frame.shape[0]}")
                            tracker.reset()
                        shape = frame.shape
                        result = pipeline.process(frame)
                        if tracker is not None:
                            dets, numbers, lines = in_reading_order(tracker.update(result.detections, result.rejected))
                        else:
                            dets, numbers, lines = in_reading_order(result.detections, result.reading)
                        if window is not None or outputs.recorder is not None:
                            t_draw = time.perf_counter()
                            shown = draw_overlay(frame, dets, lines, ov, hud, result.rejected, result.mask)
                            hud.timings = {**result.timings, "draw": (time.perf_counter() - t_draw) * 1e3}
                        if outputs.recorder is not None:
                            outputs.recorder.write(shown)
                        if outputs.jsonl is not None:
                            name = getattr(source, "current_name", getattr(source, "name", ""))
                            shown = FrameResult(dets, result.rejected, numbers, result.timings, None)
                            outputs.jsonl.write(make_record(summary.frames, name, shown,
                                                            result.timings["total"], scale))
                        summary.frames += 1
                        last = (frame, dets, lines, result)
                        now = time.perf_counter()
                        if t_prev is not None:
                            dt = max(now - t_prev, 1e-6)
                            hud.fps = 1.0 / dt if hud.fps == 0 else 0.9 * hud.fps + 0.1 / dt
                        t_prev = now
                if window is None:
                    continue
                if shown is None:  # paused, finished or waiting: the last frame again, with today's HUD
                    if last is None:
                        shown = np.zeros((240, 320, 3), np.uint8)
                    else:
                        frame, dets, lines, result = last
                        shown = draw_overlay(frame, dets, lines, ov, hud, result.rejected, result.mask)
                key = window.show(shown)
                if paused or finished:
                    time.sleep(0.01)
                    t_prev = None
                if key < 0:
                    continue
                if key in KEY_QUIT:
                    summary.end = "quit"
                    break
                if key == ord(" "):
                    paused = not paused
                elif key == ord("a"):
                    ov.attention = not ov.attention
                elif key == ord("m"):
                    ov.inset = not ov.inset
                elif key == ord("d"):
                    ov.debug = not ov.debug
                elif key == ord("h"):
                    ov.help = not ov.help
                elif key == ord("c") and hasattr(source, "clear"):
                    source.clear()
                elif key == ord("r"):
                    if outputs.recorder is None:
                        rec = outputs.start_recording()
                        set_status(f"recording to {rec.path}")
                    else:
                        path, n = outputs.stop_recording()
                        set_status(f"saved {path} ({n} frames)")
                elif key == ord("s") and last is not None:
                    frame, dets, lines, result = last
                    snap = next_numbered_path(cfg.snapshots_dir, "snap", ".png")
                    snap.parent.mkdir(parents=True, exist_ok=True)
                    img = draw_overlay(frame, dets, lines, ov, replace(hud, status=""),
                                       result.rejected, result.mask)
                    cv2.imwrite(str(snap), img)
                    set_status(f"saved {snap}")
        except SourceError as e:
            summary.end = "source failed"
            outputs.close()
            saved = "; ".join(f"recording {p} finalised ({n} frames)" for p, n in outputs.recorded)
            raise SourceError(f"{e}; {saved}" if saved else str(e)) from None
        except (Interrupted, KeyboardInterrupt) as e:
            summary.end = type(e).__name__
            raise
        finally:
            summary.fps = summary.frames / max(time.perf_counter() - t_start, 1e-9)
            outputs.close()
            summary.recorded = outputs.recorded
            summary.jsonl_records = outputs.jsonl.records if outputs.jsonl is not None else 0
    return summary


def describe(summary: RunSummary) -> str:
    """One line on what a run produced."""
    parts = [f"{summary.frames} frames at {summary.fps:.1f} FPS"]
    parts += [f"recording {p} ({n} frames)" for p, n in summary.recorded]
    if summary.jsonl_records:
        parts.append(f"{summary.jsonl_records} JSONL records")
    return "; ".join(parts)
