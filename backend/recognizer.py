"""Batched recognition: (N, 1, 28, 28) crops -> digits, probabilities, attention maps.

Two engines behind one interface: PyTorch (CPU, CUDA, Apple MPS) and ONNX Runtime (CPU, see
backend.onnx_backend). Both run the same `InferenceHead` graph, so their outputs agree.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .checkpoint import DEFAULT_CHECKPOINT, load_model
from .device import resolve_device
from .errors import UserError
from .model import VisionTransformer, attention_rollout, count_parameters, last_layer_cls_attention

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


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
    def from_outputs(cls, probs: np.ndarray, rollout: np.ndarray, last: np.ndarray) -> "Predictions":
        """From the InferenceHead outputs (numpy, float32)."""
        digits = probs.argmax(axis=1)
        conf = np.take_along_axis(probs, digits[:, None], axis=1)[:, 0]
        return cls(digits.astype(np.int64), conf, probs, rollout, last)


class InferenceHead(nn.Module):
    """The model plus its post-processing, as one graph (what ONNX export traces).

    (B, 1, 28, 28) normalised images -> logits (B, 10), probs (B, 10) float32,
    attn (B, depth, heads, N+1, N+1), rollout (B, g, g) and attn_last (B, g, g) in [0, 1].
    """

    OUTPUTS = ("logits", "probs", "attn", "rollout", "attn_last")

    def __init__(self, model: VisionTransformer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, attn = self.model(x, return_attn=True)
        with torch.autocast(x.device.type, enabled=False):  # post-processing in float32
            logits, attn = logits.float(), attn.float()
            return logits, logits.softmax(dim=1), attn, attention_rollout(attn), last_layer_cls_attention(attn)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None means plain float32.

    auto: bf16 on CUDA GPUs that support it, else fp16 on CUDA and MPS; fp32 on CPU, where
    small matrices gain little from half precision and laptop CPUs lack the instructions.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and device.type == "cpu"):
        return None
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def default_threads() -> int:
    """Intra-op threads for inference: half the cores this process may use, 1 to 4.

    The model shares the CPU with the camera reader, OpenCV detection and drawing. When those
    pre-empt one of torch's OpenMP threads, the others wait at the next barrier: on a busy
    2-core machine a 2-thread forward of one crop took 700 ms against 2.5 ms with one thread.
    Batches of a few dozen 28x28 crops gain little from more threads anyway.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    return max(1, min(4, n // 2))


class Recognizer:
    """Loads a checkpoint once and classifies whole batches in one forward pass.

    backend: "torch" (any device), "onnx" (ONNX Runtime on the CPU; needs onnxruntime), or
    "auto": onnx when the device is the CPU and onnxruntime is installed (several times faster
    there for small batches), else torch.
    threads: intra-op CPU threads (default: default_threads()); for the torch backend this sets
    torch's process-wide thread count. precision: autocast on GPUs (see autocast_dtype).
    onnx_file: with backend "onnx", a file from `main.py --export-onnx` to run instead of
    exporting the checkpoint in memory at start-up (the checkpoint still gives name and size).
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, device: str = "auto", backend: str = "torch",
                 threads: int | None = None, precision: str = "auto", onnx_file: str | os.PathLike | None = None):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.model, ckpt = load_model(checkpoint)
        if backend == "auto":
            backend = "onnx" if device in ("auto", "cpu") and resolve_device(device).type == "cpu" \
                and onnxruntime_available() else "torch"
        self.backend = backend
        self.grid = self.model.cfg.grid
        self.name = os.path.basename(str(checkpoint or DEFAULT_CHECKPOINT))
        self.params = count_parameters(self.model)
        self.preset = ckpt.get("preset", "?")
        self.threads = threads or default_threads()
        self._pinned: torch.Tensor | None = None  # reused host buffer for GPU uploads
        if backend == "onnx":
            if device not in ("auto", "cpu"):
                raise UserError(f"--backend onnx runs on the CPU; drop --device {device} or use --backend torch")
            from .onnx_backend import OnnxSession

            self.device = torch.device("cpu")
            self.amp_dtype = None
            self._session = OnnxSession(onnx_file, self.threads) if onnx_file else \
                OnnxSession.from_model(self.model, threads=self.threads)
            if self._session.grid != self.grid:
                raise UserError(f"{onnx_file} does not belong to checkpoint {self.name} (grid {self._session.grid} "
                                f"vs {self.grid})")
        else:
            self.device = resolve_device(device)
            self.amp_dtype = autocast_dtype(self.device, precision)
            self._session = None
            self._head = InferenceHead(self.model).eval()
            self.model.to(self.device)
            if self.device.type == "cpu":
                torch.set_num_threads(self.threads)

    def _upload(self, batch: np.ndarray) -> torch.Tensor:
        """numpy batch -> tensor on the device; via a reused pinned buffer and an async copy on CUDA."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.device.type != "cuda":
            return x.to(self.device)
        n = len(x)
        if self._pinned is None or len(self._pinned) < n:
            self._pinned = torch.empty((max(n, 64), *x.shape[1:]), dtype=torch.float32, pin_memory=True)
        staged = self._pinned[:n]
        staged.copy_(x)
        # The outputs are copied back synchronously below, so the buffer is free again when
        # the next batch overwrites it.
        return staged.to(self.device, non_blocking=True)

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> Predictions:
        """batch: (N, 1, 28, 28) float32, normalised by backend.mnist.normalize."""
        if len(batch) == 0:
            return Predictions.empty(self.grid)
        if self._session is not None:
            return self._session.predict(batch)
        x = self._upload(batch)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            _, probs, _, rollout, last = self._head(x)
        return Predictions.from_outputs(probs.cpu().numpy(), rollout.cpu().numpy(), last.cpu().numpy())
