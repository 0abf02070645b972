"""The live loop: source -> Pipeline -> tracking -> overlay -> window / recorder / JSONL.

Three parts: `frame_stream` reads each frame, reads its digits, tracks them and puts the shown
ones in reading order, once; sinks each own one output (a recording of the overlay or of the raw
frames, the JSONL log); the window shows the overlay and its keys map to actions (`KEYS`).
``run_app`` wires them, with or without a window (passed in, so a test can drive a fake one), and
guarantees that whatever ends the run (q, the window closed, Ctrl+C, SIGTERM, end of input, a lost
camera, an exception) the recordings are finalised and the JSONL holds only complete lines.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Protocol

import cv2
import numpy as np

from backend.errors import OutputError, SourceError, UserError, warn_stderr
from backend.live.overlay import HudInfo, OverlayConfig, draw_overlay
from backend.frame.pipeline import FrameResult, Pipeline, frame_record
from backend.live.recorder import RECORD_EXT, JsonlWriter, VideoRecorder, next_numbered_path
from backend.live.sources import MAX_SIDE, DrawPad, FolderSource, Source, prepare_frame
from backend.live.tracking import Tracker, TrackerConfig, read_tracked


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
    record_raw: str | None = None  # record the frames as read, without the overlay, into this file
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
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform:
        found = qt_platforms()
        if found is not None and platform not in found:
            return (f"QT_QPA_PLATFORM={platform} names a Qt platform that OpenCV's Qt lacks "
                    f"(it has: {', '.join(sorted(found)) or 'none'})")
        if platform != "xcb":  # offscreen, wayland, ...: no X display needed
            return None
    disp = os.environ.get("DISPLAY", "")
    if not disp:
        return "no display to open a window on (DISPLAY is not set)"
    if not _x_display_reachable(disp):
        return f"cannot connect to display {disp}"
    return None


def qt_platforms() -> set[str] | None:
    """The Qt platform plugins of the Qt that OpenCV bundles (pip wheels), or None when they cannot
    be listed (a system OpenCV, or a plugin path set by hand)."""
    if os.environ.get("QT_PLUGIN_PATH"):
        return None
    # opencv-python points QT_QPA_PLATFORM_PLUGIN_PATH at its own plugins when it is imported.
    base = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH") or os.path.join(os.path.dirname(cv2.__file__), "qt", "plugins")
    names = [n for d in (base, os.path.join(base, "platforms")) if os.path.isdir(d) for n in os.listdir(d)]
    found = {n[4:].split(".")[0] for n in names if n.startswith("libq") and ".so" in n}
    return found or None


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


class Display(Protocol):
    """A window: shows an image, returns the key pressed (-1 for none; 27 when it was closed)."""

    def show(self, img: np.ndarray) -> int: ...

    def close(self) -> None: ...


class Window:
    """The OpenCV window: frames in, keys and closing out. Each image is shown at its own size."""

    def __init__(self, name: str, on_mouse: Callable | None = None):
        problem = display_problem()
        if problem:
            raise UserError(f"{problem}; run with --no-display (add --record OUT.mkv or --jsonl OUT.jsonl)")
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


# --- the frame stream ----------------------------------------------------------------------

@dataclass
class Shown:
    """One frame as the user sees it."""

    index: int  # frame number in this run
    name: str  # where it came from (a folder's image, a video file, "camera 0")
    frame: np.ndarray  # (H, W, 3) BGR uint8 as read, after prepare_frame
    scale: float  # what prepare_frame applied: boxes / scale are in pixels of the frame as read
    result: FrameResult  # the digits shown (tracked and smoothed on videos) in reading order

    @property
    def lines(self) -> list[str]:
        """The numbers read, one string per line of writing (numbers separated by spaces)."""
        r = self.result.reading
        return [" ".join(r.numbers[k] for k in line) for line in r.lines]


def _read(source: Source) -> tuple[bool, np.ndarray | None]:
    try:
        return source.read()
    except (SourceError, Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # a capture backend that raised: the source is lost
        raise SourceError(f"{source.name} failed: {type(e).__name__}: {str(e).strip()[:120]}") from None


def frame_stream(source: Source, pipeline: Pipeline, tracker: Tracker | None, max_side: int = MAX_SIDE,
                 warn: Callable[[str], None] = warn_stderr) -> Iterator[Shown | None]:
    """Frames of `source` -> what to show of each: read, process, track, put in reading order.

    Yields None whenever the source has nothing more (a folder stepped back can go on). Raises
    SourceError when the source fails or delivers nothing usable for MAX_BAD_FRAMES frames.
    """
    shape, bad, index, warned_limit = None, 0, 0, False
    while True:
        ok, raw = _read(source)
        if not ok:
            yield None
            continue
        try:
            frame, scale = prepare_frame(raw, max_side)
        except ValueError as e:
            bad += 1
            if bad == 1:
                warn(f"unusable frame from {source.name} ({e}); skipping")
            if bad >= MAX_BAD_FRAMES:
                raise SourceError(f"{source.name} delivers no usable frames ({e})") from None
            continue
        bad = 0
        if tracker is None:
            result = pipeline.process(frame)
        else:
            if shape is not None and frame.shape != shape:  # a stream that changes size mid-run
                warn(f"frame size changed from {shape[1]}x{shape[0]} to {frame.shape[1]}x{frame.shape[0]}")
                tracker.reset()
            result = read_tracked(pipeline, tracker, frame)
        shape = frame.shape
        if result.dropped and not warned_limit:
            warned_limit = True
            warn(f"{source.current_name}: more than {pipeline.cfg.detect.max_digits} digit candidates; "
                 f"{result.dropped} left unread (--max-digits raises the limit)")
        yield Shown(index, source.current_name, frame, scale, result)
        index += 1


# --- sinks: each owns one output ---------------------------------------------------------------

def record(shown: Shown) -> dict:
    """The JSONL object of a shown frame (`frame_record`'s format), boxes in pixels of the frame as
    read; tracked digits add a "track_id"."""
    result = shown.result
    rec = frame_record(shown.index, shown.name, result, result.timings.get("total", 0.0))
    ids = result.detections.track_ids
    for i, det in enumerate(rec["detections"]):
        if shown.scale != 1.0:
            det["box"] = [int(round(v / shown.scale)) for v in det["box"]]
        if ids is not None:
            det["track_id"] = int(ids[i])
    return rec


class JsonlSink:
    """One JSON record per frame."""

    overlay = False  # needs no drawing

    def __init__(self, path: str | os.PathLike):
        self.writer = JsonlWriter(path)

    def write(self, shown: Shown, image: np.ndarray | None) -> None:
        self.writer.write(record(shown))

    def close(self) -> None:
        self.writer.close()


class VideoSink:
    """A recording of the overlay, or (`raw`) of the frames as read, to run through the tool again.

    fps: the rate to write at (a video file's own); None measures the real rate, so a recording of
    a camera or the demo plays at the speed it happened whatever rate the loop ran at.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None, fallback_fps: float | None, raw: bool = False,
                 size: tuple[int, int] | None = None):
        self.recorder = VideoRecorder(path, fps=fps, fallback_fps=fallback_fps, size=size)
        self.overlay = not raw

    def write(self, shown: Shown, image: np.ndarray | None) -> None:
        self.recorder.write(image if self.overlay else shown.frame)

    def close(self) -> tuple[str, int]:
        self.recorder.close()
        return str(self.recorder.path), self.recorder.frames_written


# --- the loop and its keys -----------------------------------------------------------------

class Loop:
    """What the keys act on: the frame shown, the overlay's switches, pause, the sinks."""

    def __init__(self, source: Source, cfg: AppConfig, hud: HudInfo, window: bool):
        self.source, self.cfg, self.hud, self.window = source, cfg, hud, window
        self.overlay = cfg.overlay
        self.sinks: list[JsonlSink | VideoSink] = []
        self.keyed: VideoSink | None = None  # the recording the r key started
        self.recorded: list[tuple[str, int]] = []  # (file, frames) per finished recording
        self.still = source.fps is None and not source.live  # images: a window waits on each
        self.paused = self.held = self.ended = self.quit = False
        self.last: Shown | None = None
        self.status_until = 0.0
        self._t_prev: float | None = None

    def wants_frame(self) -> bool:
        return not (self.paused or self.held or self.ended)

    def set_status(self, text: str, seconds: float = STATUS_S) -> None:
        self.hud.status = text
        self.status_until = time.monotonic() + seconds

    def draw(self, shown: Shown, hud: HudInfo | None = None) -> np.ndarray:
        r = shown.result
        return draw_overlay(shown.frame, r.detections, shown.lines, self.overlay, hud or self.hud, r.rejected, r.mask)

    def deliver(self, shown: Shown) -> np.ndarray | None:
        """A new frame to every sink and (returned, drawn only when someone shows it) to the window."""
        now = time.perf_counter()
        if self._t_prev is not None:
            dt = max(now - self._t_prev, 1e-6)
            self.hud.fps = 1.0 / dt if self.hud.fps == 0 else 0.9 * self.hud.fps + 0.1 / dt
        self._t_prev = now
        image = None
        if self.window or any(s.overlay for s in self.sinks):
            self.refresh_hud()
            # This frame's stages, and the drawing time of the one before (this one is being drawn).
            draw_ms = self.hud.timings.get("draw")
            self.hud.timings = {**shown.result.timings, **({"draw": draw_ms} if draw_ms is not None else {})}
            t_draw = time.perf_counter()
            image = self.draw(shown)
            self.hud.timings["draw"] = (time.perf_counter() - t_draw) * 1e3
        for sink in self.sinks:
            sink.write(shown, image)
        self.last = shown
        self.held = self.window and self.still
        return image

    def redraw(self) -> np.ndarray:
        """Paused, held or ended: the last frame again, with the HUD as it is now."""
        self._t_prev = None
        self.refresh_hud()
        return np.zeros((240, 320, 3), np.uint8) if self.last is None else self.draw(self.last)

    def refresh_hud(self) -> None:
        self.hud.recording = self.keyed.recorder.path.name if self.keyed is not None else None
        self.hud.paused = self.paused
        if time.monotonic() > self.status_until:
            self.hud.status = ""

    def start_recording(self, path: str | os.PathLike, raw: bool = False) -> VideoSink:
        # A video file's frames are all read: write them at its rate. Live sources: the real rate.
        fps = None if self.source.live else self.source.fps
        # A folder's images differ in size: its video holds them all (FolderSource.frame_size).
        sink = VideoSink(path, fps, self.source.fps, raw, getattr(self.source, "frame_size", None))
        self.sinks.append(sink)
        return sink

    def close_sink(self, sink: JsonlSink | VideoSink) -> None:
        self.sinks.remove(sink)
        done = sink.close()
        if done is not None:
            self.recorded.append(done)

    def close(self) -> None:
        """Finalise every output; safe to call twice."""
        errors = []
        for sink in list(self.sinks):
            try:
                self.close_sink(sink)
            except Exception as e:  # noqa: BLE001 (the others are still finalised)
                errors.append(e)
        self.keyed = None
        if errors:
            raise errors[0]

    def end_of_input(self) -> None:
        self.ended = True
        self.set_status("end of input - q to quit" + (", p previous" if isinstance(self.source, FolderSource) else ""),
                        float("inf"))

    # Key actions.
    def stop(self) -> None:
        self.quit = True

    def toggle_pause(self) -> None:
        self.paused = not self.paused

    def toggle_recording(self) -> None:
        if self.keyed is None:
            self.keyed = self.start_recording(next_numbered_path(self.cfg.recordings_dir, "rec", RECORD_EXT))
            self.set_status(f"recording to {self.keyed.recorder.path}")
        else:
            sink, self.keyed = self.keyed, None
            self.close_sink(sink)
            path, n = self.recorded[-1]
            self.set_status(f"saved {path} ({n} frames)")

    def snapshot(self) -> None:
        if self.last is None:
            return
        snap = next_numbered_path(self.cfg.snapshots_dir, "snap", ".png")
        snap.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(snap), self.draw(self.last, replace(self.hud, status="")))
        self.set_status(f"saved {snap}")

    def clear(self) -> None:
        if isinstance(self.source, DrawPad):
            self.source.clear()

    def next_image(self) -> None:
        self.held = False

    def previous_image(self) -> None:
        if isinstance(self.source, FolderSource):
            self.source.step_back()
            self.held = self.ended = False
            self.hud.status = ""


def _toggle(name: str) -> Callable[[Loop], None]:
    def act(loop: Loop) -> None:
        setattr(loop.overlay, name, not getattr(loop.overlay, name))
    return act


KEYS: dict[int, Callable[[Loop], None]] = {
    **dict.fromkeys((ord("q"), ord("Q"), 27), Loop.stop),
    ord(" "): Loop.toggle_pause,
    ord("a"): _toggle("attention"),
    ord("m"): _toggle("inset"),
    ord("d"): _toggle("debug"),
    ord("h"): _toggle("help"),
    ord("r"): Loop.toggle_recording,
    ord("s"): Loop.snapshot,
    ord("c"): Loop.clear,
    ord("n"): Loop.next_image,
    ord("p"): Loop.previous_image,
}


def run_app(source: Source, pipeline: Pipeline, cfg: AppConfig, warn: Callable[[str], None] | None = None,
            device: str = "", model: str = "", window: Display | None = None) -> RunSummary:
    """Run the loop until the source ends, max_frames, q/Esc or a signal; returns what was done.

    window: where to show the overlay; None opens an OpenCV window when `cfg.display`. Still
    images wait in the window for n (next) or p (previous). Raises SourceError when a source fails
    mid-run (after finalising every output) and Interrupted on a signal (likewise). The caller
    releases the source.
    """
    warn = warn or warn_stderr
    track = cfg.track if cfg.track is not None else (source.live or source.fps is not None)
    summary = RunSummary()
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack, signals_raise() as signalled:
        if window is None and cfg.display:
            window = Window(cfg.window, source.on_mouse if isinstance(source, DrawPad) else None)
        if window is not None:
            stack.callback(window.close)
        loop = Loop(source, cfg, HudInfo(device=device, model=model), window is not None)
        stack.callback(loop.close)
        stream = frame_stream(source, pipeline, Tracker(cfg.tracker) if track else None, cfg.max_side, warn)
        try:
            if cfg.jsonl:
                loop.sinks.append(JsonlSink(cfg.jsonl))
            for path, raw in ((cfg.record, False), (cfg.record_raw, True)):
                if path:
                    loop.start_recording(path, raw)
            while not loop.quit:
                if signalled:
                    raise Interrupted(signalled[0])
                if cfg.max_frames is not None and summary.frames >= cfg.max_frames:
                    summary.end = "max frames"
                    break
                image = None
                if loop.wants_frame():
                    shown = next(stream)
                    if shown is not None:
                        image = loop.deliver(shown)
                        summary.frames += 1
                    elif window is not None and cfg.hold_last and loop.last is not None:
                        loop.end_of_input()
                    else:
                        summary.end = "end of input"
                        break
                if window is None:
                    continue
                key = window.show(image if image is not None else loop.redraw())
                if not loop.wants_frame():
                    time.sleep(0.01)
                if key in KEYS:
                    KEYS[key](loop)
            else:
                summary.end = "quit"
        except (SourceError, OutputError) as e:  # a full disk (OutputError) ends the run the same way
            summary.end = "source failed" if isinstance(e, SourceError) else "output failed"
            loop.close()
            saved = "; ".join(f"recording {p} finalised ({n} frames)" for p, n in loop.recorded)
            raise type(e)(f"{e}; {saved}" if saved else str(e)) from None
        except (Interrupted, KeyboardInterrupt) as e:
            summary.end = type(e).__name__
            raise
        finally:
            summary.fps = summary.frames / max(time.perf_counter() - t_start, 1e-9)
            jsonl = [s.writer.records for s in loop.sinks if isinstance(s, JsonlSink)]
            loop.close()
            summary.recorded = loop.recorded
            summary.jsonl_records = sum(jsonl)
    return summary

def describe(summary: RunSummary) -> str:
    """One line on what a run produced."""
    parts = [f"{summary.frames} frames at {summary.fps:.1f} FPS"]
    parts += [f"recording {p} ({n} frames)" for p, n in summary.recorded]
    if summary.jsonl_records:
        parts.append(f"{summary.jsonl_records} JSONL records")
    return "; ".join(parts)
