"""What the browser app does with a request, apart from the page (backend/live/web.py) and so
without Gradio: decode an upload safely, read a frame through a model's pipeline (tracked for the
webcam), and answer a click on a digit. The models are loaded once per process and shared by
every tab (``Models``)."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.errors import UserError
from backend.frame.detections import Detections
from backend.frame.pipeline import Pipeline
from backend.live.app import frame_stream, record
from backend.live.overlay import JET, HudInfo, OverlayConfig, draw_overlay
from backend.live.sources import MAX_SIDE, FrameOnce, decode_image, to_bgr8
from backend.live.tracking import Tracker
from backend.model.recognizer import Recognizer, RecognizerConfig

ROOT = Path(__file__).resolve().parents[2]
# The model switch, first the one shown first: the shipped default, then the 7x7-token `accurate`
# and the 16-token `fast` presets (artifacts/MODEL_CARD.md).
MODEL_FILES = {name: ROOT / "artifacts" / f for name, f in
               (("default", "digits_vit.pt"), ("accurate", "digits_vit_accurate.pt"), ("fast", "digits_vit_fast.pt"))}
MAX_UPLOAD_MB = 20  # a phone photo is 2-12 MB; larger uploads are refused before they reach the server's disk
MAX_PIXELS = 50_000_000  # refused from the file header, before decoding (a 30000x30000 PNG would need 2.7 GB)
SHOW_SIDE = 1600  # the annotated image sent back is at most this wide or tall


# --- decoding uploads ---------------------------------------------------------------------------

def decode_upload(path: str | os.PathLike, max_pixels: int = MAX_PIXELS,
                  max_bytes: int = MAX_UPLOAD_MB << 20) -> np.ndarray:
    """An uploaded image file -> (H, W, 3) BGR uint8, upright (EXIF), decoded as the command line
    decodes images. UserError with a one-line message for a file over `max_bytes`, what is not an
    image, a corrupt file, and an image of more than `max_pixels` (refused from its header)."""
    name = Path(path).name
    if os.path.getsize(path) > max_bytes:
        raise UserError(f"{name} is larger than {max_bytes >> 20} MB")
    with open(path, "rb") as fh:
        return to_bgr8(decode_image(fh.read(), max_pixels, name))


# --- models and sessions ------------------------------------------------------------------------

class Models:
    """Each checkpoint loaded once per process, shared by every tab. Predictions take turns: the
    pipelines of several tabs run at once, and the GPU path reuses one upload buffer."""

    def __init__(self, files: dict[str, str | os.PathLike], cfg: RecognizerConfig | None = None):
        cfg = cfg or RecognizerConfig(backend="auto")
        self.recognizers = {name: Recognizer(path, cfg) for name, path in files.items()}
        self.lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.recognizers)

    def pipeline(self, name: str) -> Pipeline:
        return Pipeline(_Shared(self.recognizers[name], self.lock))


@dataclass
class _Shared:
    recognizer: Recognizer
    lock: threading.Lock

    def predict(self, batch: np.ndarray):
        with self.lock:
            return self.recognizer.predict(batch)


@dataclass
class Reading:
    """What one request read, kept per tab so a digit can be picked afterwards."""

    dets: Detections  # in reading order, boxes in pixels of the processed frame
    show_scale: float  # pixels of the image shown per pixel of the processed frame
    record: dict  # the JSONL record

    def choices(self) -> list[tuple[str, int]]:
        return [(f"#{i + 1}: {int(d)} ({100 * float(c):.0f} %)", i)
                for i, (d, c) in enumerate(zip(self.dets.digits, self.dets.confidence))]


@dataclass
class Webcam:
    """One tab's webcam: its own reader (ink polarity, tracker) and frame rate."""

    model: str
    reader: Reader
    last: float = 0.0  # time of the previous frame
    fps: float = 0.0  # moving average of frames per second


# --- one request --------------------------------------------------------------------------------

class Reader:
    """One tab's stream of frames through a model's pipeline, tracked for the webcam."""

    def __init__(self, pipeline: Pipeline, name: str, track: bool):
        self.source = FrameOnce(name, live=track)
        self.stream = frame_stream(self.source, pipeline, Tracker() if track else None, MAX_SIDE)

    def read(self, frame: np.ndarray, hud: HudInfo | None = None) -> tuple[np.ndarray, Reading, list[str]]:
        """A BGR frame -> (annotated RGB image to show, the reading, the numbers line by line)."""
        self.source.frame = frame
        shown = next(self.stream)
        if shown is None:  # frame_stream skipped a frame it could not use
            raise UserError("the image has no pixels")
        r = shown.result
        if hud is not None:
            hud.timings = r.timings
        # The page lists the numbers and shows the model's input beside the image: not drawn again.
        image = draw_overlay(shown.frame, r.detections, shown.lines, OverlayConfig(numbers=False, inset=False), hud,
                             r.rejected, r.mask)
        k = min(1.0, SHOW_SIDE / max(image.shape[:2]))
        if k < 1.0:
            image = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), Reading(r.detections, k, record(shown)), shown.lines


def read_once(pipeline: Pipeline, frame: np.ndarray, name: str) -> tuple[np.ndarray, Reading, list[str]]:
    return Reader(pipeline, name, track=False).read(frame)


def digit_views(reading: Reading | None, index: int | None) -> tuple[np.ndarray | None, dict | None, np.ndarray | None]:
    """The picked digit -> (its 28x28 model input, enlarged; its ten probabilities; its attention
    rollout over that input as a heatmap). Nothing when there is no such digit."""
    if reading is None or index is None or not 0 <= index < len(reading.dets):
        return None, None, None
    d = reading.dets
    crop = cv2.resize(d.crops[index], (224, 224), interpolation=cv2.INTER_NEAREST)
    probs = {str(k): float(p) for k, p in enumerate(d.probs[index])}
    attn = cv2.resize(np.clip(d.attn[index], 0, 1).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
    heat = cv2.applyColorMap((np.clip(attn, 0, 1) * 255).astype(np.uint8), JET)
    ink = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    blend = cv2.addWeighted(heat, 0.6, ink, 0.4, 0)
    return crop, probs, cv2.cvtColor(blend, cv2.COLOR_BGR2RGB)


def picked_at(reading: Reading | None, x: float, y: float) -> int | None:
    """The digit whose box holds the point (x, y) of the image shown, else the nearest one."""
    if reading is None or len(reading.dets) == 0:
        return None
    b = reading.dets.boxes.astype(np.float64) * reading.show_scale
    cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    inside = (x >= b[:, 0]) & (x <= b[:, 0] + b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 1] + b[:, 3])
    dist = np.hypot(cx - x, cy - y) - 1e6 * inside
    return int(np.argmin(dist))


def summary(lines: list[str], n: int, ms: float, model: str) -> str:
    if not n:
        return f"No digits found ({ms:.0f} ms, `{model}`). Write darker or larger, or hold the page closer."
    text = "  \n".join(f"`{line}`" for line in lines)
    return (f"**{n} digit{'s' * (n != 1)}** in {ms:.0f} ms by `{model}` (click one to look closer), line by line:"
            f"  \n{text}")


def save_json(record: dict, path: Path) -> str:
    """The record as a file to download; one per tab and view, overwritten, so they stay few."""
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return str(path)
