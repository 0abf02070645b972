"""Where frames come from: a camera index, a video file, an image, a folder of images, `demo`.

Every source behaves like ``cv2.VideoCapture``: ``read() -> (ok, frame)`` and ``release()``, so a
list of frames in a test can stand in for any of them. Sources hand frames over exactly as they
were decoded; ``prepare_frame`` turns whatever arrives (gray, BGRA, 16-bit, float, enormous) into
the BGR uint8 frame of bounded size that the rest of the program expects.

Cameras are read on their own thread (``LiveCapture``) and the loop always takes the newest frame,
so the display never lags behind the camera; a camera that stops delivering is reopened for a few
seconds before the run gives up. Video files are read in order, every frame.
"""
from __future__ import annotations

import contextlib
import io
import os
import queue
import stat
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np
from PIL import Image

from backend.errors import SourceError, UserError, warn_stderr
from backend.live.quiet import quiet_opencv

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
                        ".pnm", ".jp2", ".exr", ".hdr", ".pxm", ".sr", ".ras"})
MAX_SIDE = 4096  # frames whose longer side exceeds this are downscaled, so time per frame stays bounded
MAX_PIXELS = 100_000_000  # images larger than this are refused before decoding (decompression bombs)
RECORD_SIDE = 1920  # a folder's recording fits every image into at most this longest side
# EXIF orientation -> how to turn the stored pixels upright (numpy's rot90 turns anticlockwise).
ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a.swapaxes(0, 1), 2),
          8: lambda a: np.rot90(a, 1)}


class Capture(Protocol):
    """Anything that reads like cv2.VideoCapture."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class Source(Capture, Protocol):
    """What the live app reads from: a capture that says what it is."""

    name: str  # for messages: "camera 0", a file or folder path, "demo"
    current_name: str  # where the frame last read came from (a folder's image)
    fps: float | None  # the source's own frame rate; None for still images
    live: bool  # frames happen in real time (a camera, the demo): recordings measure their rate


# --- normalising what a source delivers -------------------------------------------------------

def to_bgr8(frame: np.ndarray) -> np.ndarray:
    """Any decoded image -> (H, W, 3) BGR uint8.

    Accepts gray (H, W) or (H, W, 1), BGR, BGRA (composited over white paper, so a digit drawn on
    a transparent canvas stays dark on light), uint8, uint16 (scaled by 1/257), float (0..1) and
    other integer types (scaled by their range). Raises ValueError for what is not an image.
    """
    if frame is None or not isinstance(frame, np.ndarray):
        raise ValueError("not an image")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise ValueError(f"unsupported image shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"empty image {frame.shape[1]}x{frame.shape[0]}")
    if frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    elif frame.dtype.kind == "f":
        frame = (np.clip(np.nan_to_num(frame), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif frame.dtype == np.bool_:
        frame = frame.astype(np.uint8) * 255
    elif frame.dtype != np.uint8:
        info = np.iinfo(frame.dtype)
        frame = ((frame.astype(np.float64) - info.min) * (255.0 / (info.max - info.min))).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        alpha = frame[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
        white = np.float32(255.0) * (1.0 - alpha)
        return (frame[:, :, :3].astype(np.float32) * alpha + white + 0.5).astype(np.uint8)
    return np.ascontiguousarray(frame)


def prepare_frame(frame: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Decoded image -> (BGR uint8 frame with longer side <= max_side, scale applied).

    Boxes found on the returned frame divided by `scale` are in pixels of the original image.
    """
    bgr = to_bgr8(frame)
    h, w = bgr.shape[:2]
    if max(h, w) <= max_side:
        return bgr, 1.0
    s = max_side / max(h, w)
    return cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


# --- files ------------------------------------------------------------------------------------

def image_header(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation 1-8) from an encoded image's header, without decoding the
    pixels; None for a format Pillow does not know (EXR, HDR, ...). ValueError for an image over
    Pillow's own bomb limit (about 179 M pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if im.format == "PNG":  # its getexif() would decode the pixels to find a late chunk
                    exif = Image.Exif()
                    if im.info.get("exif"):
                        exif.load(im.info["exif"])
                else:
                    exif = im.getexif()
                orientation = exif.get(0x0112, 1)
    except Image.DecompressionBombError as e:
        raise ValueError(str(e)) from None
    except Exception:  # noqa: BLE001 (not an image Pillow can open: OpenCV may still decode it)
        return None
    return w, h, orientation if orientation in ORIENT else 1


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> the pixels as stored (any depth, any channels), turned upright by
    their EXIF orientation. UserError when the bytes are not an image, or when the header says it
    has more than `max_pixels` pixels (checked before anything is decoded; formats Pillow cannot
    read are checked after decoding, within OpenCV's own limit of 2^30 pixels)."""
    try:
        header = image_header(data)
    except ValueError:  # beyond Pillow's own limit
        raise UserError(f"{name} is too large (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    if header and header[0] * header[1] > max_pixels:
        raise UserError(f"{name} is too large ({header[0]}x{header[1]}; the limit is {max_pixels:,} pixels)")
    try:
        with quiet_opencv():
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error as e:
        raise UserError(f"cannot read {name}: {str(e).strip().splitlines()[-1][:120]}") from None
    if img is None or img.size == 0:
        raise UserError(f"cannot read {name} (empty, corrupt or not an image)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise UserError(f"{name} is too large ({img.shape[1]}x{img.shape[0]}; the limit is {max_pixels:,} pixels)")
    if header and header[2] != 1:
        img = np.ascontiguousarray(ORIENT[header[2]](img))
    return img


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file (see decode_image); UserError if it cannot be read."""
    try:
        with open(path, "rb") as fh:  # also reads non-ASCII paths, unlike cv2.imread
            data = fh.read()
    except OSError as e:
        raise UserError(f"cannot read image {path}: {e.strerror or e}") from None
    return decode_image(data, max_pixels, f"image {path}")


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file as shown (EXIF orientation applied), from its header only;
    None when the header cannot tell."""
    try:
        with open(path, "rb") as fh:
            header = image_header(fh.read(1 << 20))  # headers sit in the first bytes
    except (OSError, ValueError):
        return None
    if header is None:
        return None
    w, h, orientation = header
    return (h, w) if orientation >= 5 else (w, h)


def recording_size(sizes: list[tuple[int, int]], max_side: int = MAX_SIDE,
                   limit: int = RECORD_SIDE) -> tuple[int, int] | None:
    """The video size that holds every one of these frame sizes (after prepare_frame caps them at
    `max_side`), at most 4:1 so that one strip does not flatten the rest, shrunk to at most
    `limit` on its longer side; None for no sizes."""
    fitted = [(w * s, h * s) for w, h in sizes for s in [min(1.0, max_side / max(w, h))]]
    if not fitted:
        return None
    w, h = max(f[0] for f in fitted), max(f[1] for f in fitted)
    w, h = max(w, h / 4), max(h, w / 4)
    s = min(1.0, limit / max(w, h))
    return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)  # even sides suit every codec


class FrameOnce:
    """A source that delivers the frame it holds once; the browser app puts each request's in."""

    fps: float | None = None

    def __init__(self, name: str, frame: np.ndarray | None = None, live: bool = False):
        self.name = self.current_name = name
        self.frame = frame
        self.live = live

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame, self.frame = self.frame, None
        return frame is not None, frame

    def release(self) -> None:
        self.frame = None


class ImageSource(FrameOnce):
    """One image file, delivered once."""

    def __init__(self, path: str | os.PathLike, max_pixels: int = MAX_PIXELS):
        super().__init__(str(path), read_image(path, max_pixels))


class FolderSource:
    """The images of a folder in sorted order; `current_name` is the path of the image last read.

    An unreadable file among readable ones (or one over `max_pixels`) is skipped with a warning
    line, so one bad file does not end a long batch; a folder with no readable image at all is a
    UserError. `frame_size` is a video size that holds every image (from their headers), so a
    recording of the folder does not take the first image's shape.
    """

    live = False

    def __init__(self, folder: str | os.PathLike, warn: Callable[[str], None] | None = None,
                 max_pixels: int = MAX_PIXELS):
        folder = Path(folder)
        self.name = str(folder)
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not self.paths:
            raise UserError(f"no images in folder {folder} (looked for {', '.join(sorted(IMAGE_EXTS)[:6])}, ...)")
        self.current_name = str(self.paths[0])
        self.fps: float | None = None
        self._warn = warn or warn_stderr
        self.max_pixels = max_pixels
        sizes = [s for p in self.paths if (s := image_size(p)) and s[0] * s[1] <= max_pixels]
        self.frame_size = recording_size(sizes)
        self._next = 0
        self._current = 0  # index of the image last delivered
        self._delivered = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                img = to_bgr8(read_image(path, self.max_pixels))  # shapes the pipeline cannot take are refused here
            except (UserError, ValueError) as e:
                self._warn(f"skipping {path}: {e}")
                continue
            self.current_name = str(path)
            self._delivered += 1
            self._current = self._next - 1
            return True, img
        if not self._delivered:
            raise UserError(f"no readable images in folder {self.name}")
        return False, None

    def step_back(self) -> None:
        """The next read delivers the image before the one last read (stepping through in a window)."""
        self._next = max(self._current - 1, 0)

    def release(self) -> None:
        self._next = len(self.paths)


class VideoFileSource:
    """A video file, every frame in order. The first frame is decoded at open to validate the file.

    Frames are decoded a few ahead on a thread (OpenCV releases the GIL while it decodes), so
    decoding overlaps detection and recognition of the previous frame.
    """

    live = False
    AHEAD = 4  # frames decoded ahead of the reader

    def __init__(self, path: str | os.PathLike):
        self.name = str(path)
        self.current_name = self.name
        with quiet_opencv(native=True):
            self._cap = cv2.VideoCapture(self.name)
            ok, frame = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or frame is None or frame.size == 0:
            self._cap.release()
            raise UserError(f"cannot read video {path} (empty, corrupt or an unsupported format)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps: float | None = fps if 0 < fps < 1000 else None
        self._frames: queue.Queue = queue.Queue(self.AHEAD)
        self._frames.put(frame)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._decode, name=f"decode {self.name}", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        """Decode into the queue until the file ends (None), decoding raises (the exception, for
        read() to raise) or release() is called."""
        while not self._stop.is_set():
            try:
                ok, frame = self._cap.read()
                item = frame if ok and frame is not None and frame.size else None
            except Exception as e:  # noqa: BLE001 (raised again in the reader's thread)
                item = e
            while not self._stop.is_set():
                try:
                    self._frames.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, np.ndarray):
                return

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._ended:
            return False, None
        item = self._frames.get()
        if not isinstance(item, np.ndarray):
            self._ended = True
            if isinstance(item, Exception):
                raise item
            return False, None
        return True, item

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._cap.release()
        self._ended = True


# --- live sources -----------------------------------------------------------------------------

@dataclass
class LiveConfig:
    retry_s: float = 3.0  # how long a camera that stopped delivering is reopened before giving up
    stall_s: float = 3.0  # no new frame for this long counts as a failure (then retried)
    retry_wait_s: float = 0.2  # pause between reopen attempts


class LiveCapture:
    """Reads a capture on its own thread and always hands out the newest frame.

    `open_capture` makes a fresh capture (cv2.VideoCapture-like); it is called again to reopen a
    camera that raised, returned (False, None) or stalled, for up to `retry_s` seconds. When the
    camera cannot be recovered, `read()` raises SourceError with a one-line reason.
    """

    live = True

    def __init__(self, open_capture: Callable[[], Capture], name: str, cfg: LiveConfig | None = None,
                 fps: float | None = None, warn: Callable[[str], None] | None = None):
        self.name = name
        self.current_name = name
        self.fps = fps
        self.cfg = cfg or LiveConfig()
        self._open = open_capture
        self._warn = warn or warn_stderr
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0  # frames captured so far
        self._taken = 0  # sequence number of the frame last handed out
        self._error: str | None = None
        self._stop = threading.Event()
        self._cap = self._open_or_none()
        if self._cap is None:
            raise SourceError(f"cannot open {name}")
        self._thread = threading.Thread(target=self._run, name=f"capture {name}", daemon=True)
        self._thread.start()

    def _open_or_none(self) -> Capture | None:
        try:
            with quiet_opencv():
                cap = self._open()
        except Exception:
            return None
        opened = getattr(cap, "isOpened", None)
        if cap is None or (opened is not None and not opened()):
            if cap is not None:
                cap.release()
            return None
        return cap

    def _read_once(self) -> np.ndarray | None:
        try:
            ok, frame = self._cap.read()
        except Exception:
            return None
        if not ok or frame is None or getattr(frame, "size", 0) == 0:
            return None
        return frame

    def _run(self) -> None:
        failing_since: float | None = None
        while not self._stop.is_set():
            frame = self._read_once() if self._cap is not None else None
            if frame is not None:
                failing_since = None
                with self._cond:
                    self._frame, self._seq = frame, self._seq + 1
                    self._cond.notify_all()
                continue
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                self._warn(f"{self.name} stopped delivering frames; retrying for {self.cfg.retry_s:g} s")
            if now - failing_since > self.cfg.retry_s:
                self._fail(f"{self.name} stopped delivering frames")
                return
            self._reopen()

    def _reopen(self) -> None:
        if self._cap is not None:
            with contextlib.suppress(Exception):
                self._cap.release()
        self._stop.wait(self.cfg.retry_wait_s)
        self._cap = None if self._stop.is_set() else self._open_or_none()

    def _fail(self, reason: str) -> None:
        with self._cond:
            self._error = reason
            self._cond.notify_all()

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The newest frame not yet handed out; waits for one. SourceError once the camera is lost."""
        deadline = time.monotonic() + self.cfg.stall_s + self.cfg.retry_s
        with self._cond:
            while self._seq == self._taken and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._error = f"{self.name} stalled (no frame for {self.cfg.stall_s + self.cfg.retry_s:g} s)"
                    break
                self._cond.wait(min(left, 0.1))
            if self._seq == self._taken:
                raise SourceError(self._error)
            self._taken = self._seq
            return True, self._frame

    def release(self) -> None:
        self._stop.set()
        # A camera that stalled is stuck inside read(): waiting for it would only delay the exit.
        self._thread.join(timeout=0.2 if self._error else 2.0)
        if self._cap is not None:
            with contextlib.suppress(Exception):
                self._cap.release()


def open_camera(index: int, width: int | None = None, height: int | None = None, fps: float | None = None,
                cfg: LiveConfig | None = None) -> LiveCapture:
    """Camera `index` on a capture thread, with optional size and rate requests."""

    def open_capture() -> cv2.VideoCapture:
        cap = cv2.VideoCapture(index)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps)):
            if value and cap.isOpened():
                cap.set(prop, value)
        with contextlib.suppress(Exception):
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frames, not a queue of old ones
        return cap

    try:
        return LiveCapture(open_capture, f"camera {index}", cfg, fps=fps)
    except SourceError:
        raise SourceError(f"no camera at index {index} (try --source demo to run without a webcam, "
                          f"or --source VIDEO/IMAGE)") from None


def list_cameras(indices: range = range(10),
                 open_capture: Callable[[int], Capture] | None = None) -> list[tuple[int, int, int]]:
    """(index, width, height) of every camera among `indices` that opens and delivers a frame,
    probed quietly (OpenCV logs a line for each index that is absent)."""
    open_capture = open_capture or cv2.VideoCapture
    found = []
    for i in indices:
        with quiet_opencv(native=True):
            cap = open_capture(i)
            try:
                ok, frame = cap.read() if cap.isOpened() else (False, None)
            finally:
                cap.release()
        if ok and frame is not None:
            found.append((i, frame.shape[1], frame.shape[0]))
    return found


# --- synthetic sources ------------------------------------------------------------------------

class DemoSource:
    """The built-in scene of handwritten digits on paper, moving gently (no webcam needed).

    With `realtime` frames are paced at `fps`, so motion looks as it would from a camera.
    """

    live = True

    def __init__(self, fps: float = 30.0, realtime: bool = False, seed: int = 0, scene=None,
                 width: int | None = None, height: int | None = None, data_dir: str | None = None):
        if scene is None:
            from backend.frame.synth import DemoScene

            scene = DemoScene(data_dir=data_dir, size=(width or 640, height or 480), seed=seed)
        self.scene = scene
        self.name = self.current_name = "demo"
        self.fps = fps
        self.realtime = realtime
        self._next_t = time.monotonic()

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.realtime:
            self._next_t += 1.0 / self.fps
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self._next_t = time.monotonic()
        return True, self.scene.next_frame()

    def release(self) -> None:
        pass


class DrawPad:
    """A sheet of paper to draw digits on with the mouse; the app forwards its window's mouse events.

    Left button draws, right button erases, `clear()` (key c) wipes the sheet.
    """

    live = True

    def __init__(self, width: int = 960, height: int = 540, stroke: int | None = None):
        self.name = self.current_name = "drawpad"
        self.fps: float | None = None
        self.canvas = np.full((height, width, 3), 245, np.uint8)
        self.stroke = stroke or max(6, height // 40)
        self._last: tuple[int, int] | None = None
        self._button = 0

    def on_mouse(self, event: int, x: int, y: int, flags: int, _param=None) -> None:
        if event in (cv2.EVENT_LBUTTONDOWN, cv2.EVENT_RBUTTONDOWN):
            self._button = 1 if event == cv2.EVENT_LBUTTONDOWN else 2
            self._last = (x, y)
        elif event in (cv2.EVENT_LBUTTONUP, cv2.EVENT_RBUTTONUP):
            self._button, self._last = 0, None
        if self._button and self._last is not None and event in (cv2.EVENT_MOUSEMOVE, cv2.EVENT_LBUTTONDOWN,
                                                                  cv2.EVENT_RBUTTONDOWN):
            ink, width = ((25, 25, 25), self.stroke) if self._button == 1 else ((245, 245, 245), self.stroke * 3)
            cv2.line(self.canvas, self._last, (x, y), ink, width, cv2.LINE_AA)
            self._last = (x, y)

    def clear(self) -> None:
        self.canvas[:] = 245

    def read(self) -> tuple[bool, np.ndarray | None]:
        return True, self.canvas.copy()

    def release(self) -> None:
        pass


# --- choosing a source from --source ----------------------------------------------------------

def open_source(spec: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                realtime: bool = False, live_cfg: LiveConfig | None = None, data_dir: str | None = None,
                max_pixels: int = MAX_PIXELS):
    """--source value -> a source: a camera index, `demo`, an image, a folder of images or a video."""
    if not spec.strip():
        raise UserError("--source is empty (use a camera index, demo, an image, a folder or a video)")
    if spec.strip().isdigit():
        return open_camera(int(spec), width, height, fps, live_cfg)
    if spec == "demo":
        return DemoSource(fps=fps or 30.0, realtime=realtime, width=width, height=height, data_dir=data_dir)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"no such file or folder: {spec} (use a camera index, demo, an image, a folder or a video)")
    if path.is_dir():
        return FolderSource(path, max_pixels=max_pixels)
    if stat.S_ISFIFO(path.stat().st_mode) or stat.S_ISSOCK(path.stat().st_mode):
        # Opening one blocks inside OpenCV until a writer appears, where Ctrl+C cannot reach.
        raise UserError(f"{spec} is a pipe or socket; give a video file, an image, a folder or a camera index")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read {spec}: permission denied")
    if path.suffix.lower() in IMAGE_EXTS:
        return ImageSource(path, max_pixels)
    return VideoFileSource(path)


def refuse_overwrites(source: str, outputs: dict[str, str | None]) -> None:
    """UserError when an output (flag -> path) would be written over the input (the file itself, or
    an image of the input folder) or over another output. Call it before anything is opened."""
    given = [(flag, Path(p)) for flag, p in outputs.items() if p]
    src = Path(source) if source.strip() and source != "demo" and not source.strip().isdigit() else None
    for i, (flag, out) in enumerate(given):
        if src is not None and src.is_dir():
            if out.exists() and out.resolve().parent == src.resolve() and out.suffix.lower() in IMAGE_EXTS:
                raise UserError(f"{flag} {out} is one of the input images; writing it would destroy it")
        elif src is not None and src.exists() and _same_file(out, src):
            raise UserError(f"{flag} {out} is the input; writing it would destroy it (choose another name)")
        for other, path in given[:i]:
            if _same_file(out, path):
                raise UserError(f"{other} and {flag} are the same file {out}; give each its own")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
