"""Stand-in scenes shared by the tests: MNIST digits written on paper, and an endless scene for
DemoSource. Real scenes with known boxes come from backend.frame.synth."""
from __future__ import annotations

import numpy as np

from app_fakes import digit_frame
from backend.frame import synth


def write_digit(img: np.ndarray, digit28: np.ndarray, x: int, y: int, height: int, weight: float = 0.6,
                ink=(120, 40, 20)) -> int:
    """Write an MNIST digit (28, 28) uint8 into the (H, W, 3) BGR image in place, its ink
    `height` pixels tall with its top-left at (x, y); weight 0 = ballpoint .. 1 = marker.
    Returns the digit's width in pixels."""
    a = synth._ink_alpha(digit28, height, weight)[..., None]
    h, w = a.shape[:2]
    roi = img[y:y + h, x:x + w].astype(np.float32)
    img[y:y + h, x:x + w] = (roi + a * (np.float32(ink) - roi)).astype(img.dtype)
    return w


class StandInScene:
    """Stands in for synth.DemoScene behind DemoSource: handwriting-like digits that shift a
    little and change their paper noise every frame, without MNIST."""

    def __init__(self, text: str = "31", shifts: int = 5, seeds: int | None = None):
        self.text, self.shifts, self.seeds = text, shifts, seeds
        self.t = 0

    def next_frame(self) -> np.ndarray:
        self.t += 1
        return digit_frame(self.text, shift=self.t % self.shifts, seed=self.t % self.seeds if self.seeds else self.t)
