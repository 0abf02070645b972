"""The digits found in one frame (supervision style: numpy arrays with first axis N), and box overlap."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """The digits of one frame, as numpy arrays with first axis N (supervision style)."""

    boxes: np.ndarray  # (N, 4) int32 x, y, w, h in pixels of the original frame
    digits: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32
    probs: np.ndarray  # (N, 10) float32
    attn: np.ndarray  # (N, g, g) float32 CLS attention rollout in [0, 1]
    attn_last: np.ndarray  # (N, g, g) float32 last-layer CLS attention in [0, 1]
    crops: np.ndarray  # (N, 28, 28) uint8 the model's input, white on black
    track_ids: np.ndarray | None = None  # (N,) int64 once tracked

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray | slice) -> "Detections":
        """The subset picked by a boolean mask or an index array (copies), or a slice (views)."""
        return Detections(self.boxes[keep], self.digits[keep], self.confidence[keep], self.probs[keep], self.attn[keep],
                          self.attn_last[keep], self.crops[keep], None if self.track_ids is None else self.track_ids[keep])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of x, y, w, h boxes a (N, 4) and b (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)
