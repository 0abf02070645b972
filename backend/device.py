"""Choosing the torch device from --device auto|cpu|cuda|mps."""
from __future__ import annotations

import torch

from .errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple MPS, then CPU; asking for one that is absent is a UserError."""
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
