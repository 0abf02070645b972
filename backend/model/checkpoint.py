"""Saving and safely loading checkpoints.

A checkpoint is a plain dict of tensors and primitives, always loaded with
``torch.load(weights_only=True)`` so that a file can never run code. It carries the model
config, so the file alone rebuilds its model.
"""
from __future__ import annotations

import errno
import os
import pickle
import tempfile
from pathlib import Path

import torch

from backend.errors import UserError, first_line
from backend.model.vit import ViTConfig, VisionTransformer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = ROOT / "artifacts" / "digits_vit.pt"


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """Write with torch.save to a temporary file in the same folder, then rename over `path`, so
    `path` always holds a whole checkpoint. OSError when the write fails (a full disk)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as fh:
            try:
                torch.save(obj, fh)
            except RuntimeError as e:  # a write that failed part-way, as torch's zip writer reports it
                raise OSError(errno.EIO, f"the write failed part-way, is the disk full? ({first_line(e, 60)})") \
                    from None
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike | None) -> dict:
    """Load a checkpoint dict safely; any problem becomes a one-line UserError."""
    path = Path(path) if path else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic not in (b"PK", b"\x80\x02"):  # torch.save's zip archive, or its legacy pickle format
        raise UserError(f"cannot load checkpoint {path}: {'empty file' if not magic else 'not a PyTorch checkpoint'}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message suggests weights_only=False, which is what we refuse
        raise UserError(f"cannot load checkpoint {path}: it holds Python objects besides tensors and plain data, "
                        "which are never loaded (they could run code)") from None
    except Exception as e:  # truncated or corrupt
        detail = first_line(e).split(". ")[0]  # torch's first sentence, not its advice to developers
        raise UserError(f"cannot load checkpoint {path}: corrupt or truncated ({detail})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"cannot load checkpoint {path}: missing 'model' or 'config' entry")
    return ckpt


def build_model(ckpt: dict, path: str | os.PathLike | None = None) -> VisionTransformer:
    """Rebuild the model a checkpoint describes and load its weights (eval mode, on CPU)."""
    path = path or DEFAULT_CHECKPOINT
    try:
        cfg = ViTConfig.from_dict(dict(ckpt["config"]))
        weights = sum(t.numel() for t in ckpt["model"].values() if isinstance(t, torch.Tensor))
        if cfg.approx_params() > 2 * weights + 100_000:  # would allocate far more than the file holds
            raise ValueError(f"its config describes ~{cfg.approx_params():,} parameters, its weights hold {weights:,}")
        model = VisionTransformer(cfg)
        model.load_state_dict(ckpt["model"])
    except (ValueError, TypeError, RuntimeError, KeyError, AttributeError) as e:
        raise UserError(f"checkpoint {path} does not match the model architecture ({first_line(e)})") from None
    for name, t in ckpt["model"].items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"checkpoint {path} has non-finite weights in {name}")
    return model.eval()


def load_model(path: str | os.PathLike | None = None) -> tuple[VisionTransformer, dict]:
    """Load a checkpoint file (the shipped default when `path` is None) into an eval model."""
    ckpt = load_checkpoint(path)
    return build_model(ckpt, path), ckpt
