"""Crops of a frame -> the (N, 1, 28, 28) MNIST-format batch the model expects."""
from __future__ import annotations

import numpy as np

from .detect import ink_mask, to_gray
from .mnist import fit_and_centre, normalize


def crops_to_mnist(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Frame and (N, 4) x, y, w, h boxes -> (N, 28, 28) uint8 white-on-black MNIST digits."""
    gray = to_gray(frame)
    out = np.zeros((len(boxes), 28, 28), np.uint8)
    for i, (x, y, w, h) in enumerate(boxes):
        crop = gray[y:y + h, x:x + w]
        out[i] = fit_and_centre(ink_mask(crop))
    return out


def to_batch(digits28: np.ndarray) -> np.ndarray:
    return normalize(digits28)
