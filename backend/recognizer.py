"""Batched recognition: (N, 1, 28, 28) crops -> digits, probabilities, attention maps."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import DEFAULT_CHECKPOINT, load_model
from .device import resolve_device
from .model import attention_rollout, count_parameters, last_layer_cls_attention


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


class Recognizer:
    """Loads a checkpoint once and classifies whole batches in one forward pass."""

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str = "auto"):
        self.model, ckpt = load_model(checkpoint)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.grid = self.model.cfg.grid
        self.name = os.path.basename(str(checkpoint or DEFAULT_CHECKPOINT))
        self.params = count_parameters(self.model)
        self.preset = ckpt.get("preset", "?")

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> Predictions:
        """batch: (N, 1, 28, 28) float32, normalised by backend.mnist.normalize."""
        if len(batch) == 0:
            return Predictions.empty(self.grid)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        logits, attn = self.model(x, return_attn=True)
        probs = logits.float().softmax(dim=1)
        conf, digits = probs.max(dim=1)
        attn = attn.float()
        return Predictions(
            digits=digits.cpu().numpy(),
            confidence=conf.cpu().numpy(),
            probs=probs.cpu().numpy(),
            attn_rollout=attention_rollout(attn).cpu().numpy(),
            attn_last=last_layer_cls_attention(attn).cpu().numpy(),
        )
