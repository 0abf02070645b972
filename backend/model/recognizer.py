"""Batched recognition: (N, 1, 28, 28) crops -> digits, probabilities, attention maps.

Two engines behind one interface: PyTorch (CPU, CUDA, Apple MPS) and ONNX Runtime (CPU, see
backend.model.onnx_engine). Both run the same `InferenceHead` graph, so their outputs agree.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np
import torch

from backend.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from backend.model.device import BACKENDS, PRECISIONS, default_threads, resolve_device
from backend.errors import UserError
from backend.model.predictions import Predictions
from backend.model.vit import InferenceHead, count_parameters


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


@dataclass
class RecognizerConfig:
    """How a checkpoint is run (camera_inferencer.py's --device, --backend, --threads, --precision, --onnx)."""

    device: str = "auto"  # auto | cpu | cuda | mps
    # torch (any device), onnx (ONNX Runtime on the CPU; needs onnxruntime), or auto: onnx when the
    # device is the CPU and onnxruntime is installed (several times faster there for small batches)
    backend: str = "torch"
    # ONNX Runtime's intra-op threads (default: default_threads()); torch's are process-wide, set
    # by the program (backend.process.set_torch_threads)
    threads: int | None = None
    precision: str = "auto"  # autocast on GPUs (see autocast_dtype)
    # with backend onnx: a file from `main.py --export-onnx` to run instead of exporting the
    # checkpoint in memory at start-up (the checkpoint still gives name and size)
    onnx_file: str | os.PathLike | None = None


class Recognizer:
    """Loads a checkpoint once and classifies whole batches in one forward pass."""

    def __init__(self, checkpoint: str | os.PathLike | None = None, cfg: RecognizerConfig | None = None):
        cfg = cfg or RecognizerConfig()
        device, backend, onnx_file = cfg.device, cfg.backend, cfg.onnx_file
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.model, ckpt = load_model(checkpoint)
        if backend == "auto":
            backend = "onnx" if device in ("auto", "cpu") and resolve_device(device).type == "cpu" \
                and onnxruntime_available() else "torch"
        if onnx_file and backend != "onnx":
            raise UserError(f"--onnx {onnx_file} runs on ONNX Runtime: use --backend onnx (or auto) on the CPU")
        self.backend = backend
        self.grid = self.model.cfg.grid
        self.name = os.path.basename(str(checkpoint or DEFAULT_CHECKPOINT))
        self.params = count_parameters(self.model)
        self.preset = ckpt.get("preset", "?")
        self.threads = cfg.threads or default_threads()
        self._pinned: torch.Tensor | None = None  # reused host buffer for GPU uploads
        if backend == "onnx":
            if device not in ("auto", "cpu"):
                raise UserError(f"--backend onnx runs on the CPU; drop --device {device} or use --backend torch")
            from backend.model.onnx_engine import OnnxSession

            self.device = torch.device("cpu")
            self.amp_dtype = None
            self._session = OnnxSession(onnx_file, self.threads) if onnx_file else \
                OnnxSession.from_model(self.model, threads=self.threads)
            if self._session.grid != self.grid:
                raise UserError(f"{onnx_file} does not belong to checkpoint {self.name} (grid {self._session.grid} "
                                f"vs {self.grid})")
        else:
            self.device = resolve_device(device)
            self.amp_dtype = autocast_dtype(self.device, cfg.precision)
            self._session = None
            self._head = InferenceHead(self.model).eval()
            self.model.to(self.device)

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
        """batch: (N, 1, 28, 28) float32, normalised by backend.frame.mnist.normalize."""
        if len(batch) == 0:
            return Predictions.empty(self.grid)
        if self._session is not None:
            return self._session.predict(batch)
        x = self._upload(batch)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            _, probs, rollout, last = self._head(x)
        return Predictions.from_outputs(probs.cpu().numpy(), rollout.cpu().numpy(), last.cpu().numpy())
