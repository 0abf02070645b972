"""ONNX export of the recognizer and an ONNX Runtime (CPU) session with the Recognizer interface.

The exported graph is backend.model.recognizer.InferenceHead: the model and its post-processing, so
the file alone gives everything the overlay draws. Input `images` (B, 1, 28, 28) float32,
normalised as in training; outputs `logits` (B, 10), `probs` (B, 10), `rollout` (B, g, g) and
`attn_last` (B, g, g). B is dynamic.

onnx and onnxruntime are optional dependencies; without them the ONNX paths say how to
install them.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from backend.model.checkpoint import load_model
from backend.errors import UserError, first_line
from backend.model.device import default_threads
from backend.model.predictions import Predictions
from backend.model.vit import InferenceHead, VisionTransformer

INSTALL_HINT = "pip install onnx onnxruntime  (both are listed in requirements.txt)"
OPSET = 17
TOLERANCE = 1e-4  # largest |ONNX Runtime - PyTorch| accepted on any output


def require_onnxruntime():
    """The onnxruntime module, or a UserError that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"the ONNX backend needs onnxruntime, which is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def export_model(model: VisionTransformer, out: str | os.PathLike | io.BytesIO) -> None:
    """Write `model` (with its post-processing) as ONNX to a path or a BytesIO, batch size dynamic."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise UserError(f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}") from None
    head = InferenceHead(model).eval().cpu()
    batch = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs
        # onnxscript; this one handles our plain-tensor graph exactly and needs only onnx.
        warnings.simplefilter("ignore")
        torch.onnx.export(head, torch.zeros(2, 1, 28, 28), out, input_names=["images"],
                          output_names=list(InferenceHead.OUTPUTS),
                          dynamic_axes={name: batch for name in ("images", *InferenceHead.OUTPUTS)},
                          opset_version=OPSET, dynamo=False)


class OnnxSession:
    """An ONNX Runtime CPU session over an exported InferenceHead graph.

    `predict(batch)` has the same contract as backend.model.recognizer.Recognizer.predict.
    """

    FETCH = ["probs", "rollout", "attn_last"]  # what predict needs

    def __init__(self, model_bytes_or_path: bytes | str | os.PathLike, threads: int | None = None):
        ort = require_onnxruntime()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads or default_threads()
        so.inter_op_num_threads = 1
        # Idle worker threads would otherwise spin between frames and steal the CPU that
        # detection and drawing need on a 2-core laptop.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        src = model_bytes_or_path if isinstance(model_bytes_or_path, bytes) else str(model_bytes_or_path)
        try:
            self.session = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # not a file ONNX Runtime can read
            name = src if isinstance(src, str) else "(in memory)"
            raise UserError(f"cannot load ONNX model {name}: {first_line(e)}") from None
        shape = self.session.get_outputs()[InferenceHead.OUTPUTS.index("rollout")].shape
        self.grid = int(shape[-1])

    @classmethod
    def from_model(cls, model: VisionTransformer, threads: int | None = None) -> "OnnxSession":
        """Export `model` in memory (about a second) and open a session on it."""
        buf = io.BytesIO()
        export_model(model, buf)
        return cls(buf.getvalue(), threads)

    def run(self, batch: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        """Raw graph outputs (all of InferenceHead.OUTPUTS by default) for a (N, 1, 28, 28) batch."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(outputs, {"images": x})

    def predict(self, batch: np.ndarray) -> Predictions:
        """batch: (N, 1, 28, 28) float32, normalised by backend.frame.mnist.normalize."""
        if len(batch) == 0:
            return Predictions.empty(self.grid)
        return Predictions.from_outputs(*self.run(batch, self.FETCH))


def compare_with_torch(model: VisionTransformer, session: OnnxSession, images: np.ndarray,
                       chunk: int = 64) -> dict[str, float]:
    """Largest absolute difference per output between PyTorch (float32, CPU) and ONNX Runtime.

    Compared in chunks, so a large check set never holds a whole batch's activations at once.
    """
    head = InferenceHead(model).eval().cpu()
    worst = dict.fromkeys(InferenceHead.OUTPUTS, 0.0)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk]
        with torch.inference_mode():
            ref = [t.numpy() for t in head(torch.from_numpy(x))]
        for name, r, g in zip(InferenceHead.OUTPUTS, ref, session.run(x)):
            worst[name] = max(worst[name], float(np.abs(r - g).max()))
    return worst


def export_checkpoint(checkpoint: str | os.PathLike | None, out: str | os.PathLike, check: np.ndarray) -> dict[str, float]:
    """Export a checkpoint to `out` and check ONNX Runtime against PyTorch on `check`, a normalised
    batch (N, 1, 28, 28) float32 of real digits (backend.training.data.test_batch: MNIST test).

    Returns the largest difference per output; raises UserError when any exceeds TOLERANCE.
    The file is written under a temporary name and renamed once checked, so a failed or
    interrupted export never leaves a half-written or unchecked `out`.
    """
    model, _ = load_model(checkpoint)
    out = Path(out)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            export_model(model, tmp)
        except OSError as e:
            raise UserError(f"cannot write {out}: {e.strerror or e}") from None
        diffs = compare_with_torch(model, OnnxSession(tmp), check)
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > TOLERANCE:
            raise UserError(f"{out}: ONNX Runtime differs from PyTorch by {diffs[worst]:.2e} on '{worst}' "
                            f"(tolerance {TOLERANCE:.0e}); not written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return diffs
