"""What the recognizer returns for a batch of crops: plain numpy arrays, no torch."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class Predictions:
    """Model outputs for N crops (numpy arrays, first axis N)."""

    digits: np.ndarray  # (N,) int64 argmax class
    confidence: np.ndarray  # (N,) float32 probability of that class
    probs: np.ndarray  # (N, 10) float32 softmax probabilities
    attn_rollout: np.ndarray  # (N, g, g) float32 CLS attention rollout in [0, 1]
    attn_last: np.ndarray  # (N, g, g) float32 last-layer CLS attention in [0, 1]

    @classmethod
    def empty(cls, grid: int) -> "Predictions":
        z = np.zeros((0, grid, grid), np.float32)
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 10), np.float32), z, z.copy())

    @classmethod
    def concat(cls, parts: list["Predictions"]) -> "Predictions":
        """The predictions of consecutive batches as one (at least one part)."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def select(self, idx: np.ndarray) -> "Predictions":
        """The predictions of the crops idx picks (indices or a bool mask), in its order."""
        return Predictions(*(getattr(self, f.name)[idx] for f in fields(self)))

    @classmethod
    def from_outputs(cls, probs: np.ndarray, rollout: np.ndarray, last: np.ndarray) -> "Predictions":
        """From the InferenceHead outputs (numpy, float32)."""
        digits = probs.argmax(axis=1)
        conf = np.take_along_axis(probs, digits[:, None], axis=1)[:, 0]
        return cls(digits.astype(np.int64), conf, probs, rollout, last)
