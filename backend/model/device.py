"""Choosing the torch device from --device auto|cpu|cuda|mps, and the inference engine's threads.

torch is imported only when a device is resolved, so the command lines start (and --help
answers) without it.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from backend.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("auto", "torch", "onnx")  # inference engines (backend.model.recognizer)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # autocast on GPUs (backend.model.recognizer.autocast_dtype)


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple MPS, then CPU; asking for one that is absent is a UserError."""
    import torch

    if name not in DEVICES:
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
    if name == "mps" and not has_mps:
        raise UserError("--device mps: Apple MPS is not available here (use --device cpu or auto)")
    return torch.device(name)


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
