"""Stand-ins for the live app's tests: fake cameras, synthetic frames, a tiny checkpoint.

No camera, display, GPU, network or MNIST download is needed by anything here.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from backend.model.checkpoint import save_atomic
from backend.model.vit import ViTConfig, VisionTransformer

TINY = ViTConfig(stem_channels=0, patch_size=7, embed_dim=16, depth=1, num_heads=2, mlp_ratio=1.0, drop_path=0.0)


def tiny_checkpoint(path: Path) -> Path:
    """A randomly initialised, very small ViT in the shipped checkpoint format (fast on any CPU)."""
    torch.manual_seed(0)
    model = VisionTransformer(TINY)
    save_atomic({"config": TINY.to_dict(), "model": model.state_dict(), "preset": "tiny"}, path)
    return path


def digit_frame(text: str = "2024", size: tuple[int, int] = (320, 240), shift: int = 0, seed: int = 0) -> np.ndarray:
    """(H, W, 3) BGR uint8: dark handwriting-like digits on light, slightly noisy paper."""
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 235, np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    scale = h / 110.0
    cv2.putText(img, text, (int(0.12 * w) + shift, int(0.62 * h)), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, scale,
                (40, 30, 30), max(2, int(scale * 3)), cv2.LINE_AA)
    return img


class FakeCapture:
    """A list of frames that reads like cv2.VideoCapture, and fails on request.

    fail: what happens after the frames run out: "end" (False, None), "raise" (RuntimeError),
    "stall" (read blocks until released). delay: seconds each read takes (a camera's pace).
    """

    def __init__(self, frames: list[np.ndarray], fail: str = "end", delay: float = 0.0, fps: float | None = None):
        self.frames = list(frames)
        self.fail = fail
        self.delay = delay
        self.fps = fps
        self.reads = 0
        self.released = False
        self._unblock = threading.Event()
        self.name = "fake"

    def isOpened(self) -> bool:
        return not self.released

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.reads < len(self.frames):
            self.reads += 1
            return True, self.frames[self.reads - 1]
        if self.fail == "raise":
            raise RuntimeError("device disconnected")
        if self.fail == "stall":
            self._unblock.wait(30)
        return False, None

    def release(self) -> None:
        self.released = True
        self._unblock.set()


class ListSource(FakeCapture):
    """A FakeCapture with the attributes of a source (name, fps; a video file unless `live`)."""

    def __init__(self, frames, fail: str = "end", fps: float | None = 25.0, name: str = "list",
                 live: bool = False, delay: float = 0.0):
        super().__init__(frames, fail, delay=delay, fps=fps)
        self.name = self.current_name = name
        self.live = live


class FakeWindow:
    """Stands in for the OpenCV window: keeps what it was shown and presses one scripted key per
    image shown ("." for none), then q."""

    def __init__(self, keys: list[str]):
        self.keys = list(keys)
        self.shown: list[np.ndarray] = []
        self.closed = False

    def show(self, img: np.ndarray) -> int:
        self.shown.append(img.copy())
        key = self.keys.pop(0) if self.keys else "q"
        return -1 if key == "." else ord(key)

    def close(self) -> None:
        self.closed = True


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    wr = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    for f in frames:
        wr.write(f)
    wr.release()
    return path


def video_info(path: Path) -> tuple[int, int, int, float]:
    """(frames actually decodable, width, height, fps) of a video file."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, w, h, fps
