"""Confidence calibration: temperature scaling (Guo et al., 2017) fitted on held-out digits.

A model trained with label smoothing (and distilled from a smoothed teacher) says 95 % for
nearly every digit, right or wrong. One temperature T, fitted to minimise the negative
log-likelihood of held-out digits, rescales the logits (probs = softmax(logits / T)) so that
a shown 90 % is right about 90 % of the time; the argmax, so the accuracy, is unchanged.
T is stored in the checkpoint's config and applied by InferenceHead, so the PyTorch and
ONNX paths both show calibrated confidences.

  python -m backend.training.calibrate --checkpoint runs/x/last.pt --out artifacts/digits_vit.pt

The held-out digits are the 5,000 validation images (never trained on), once clean and once
through the webcam augmentation with a fixed seed, so T fits both clean and camera-like crops.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from backend.errors import UserError
from backend.model.checkpoint import load_model, save_atomic


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many predictions fall in each. confidence (N,) in [0, 1], correct (N,) bool."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(confidence[sel].mean() - correct[sel].mean())
    return float(total / max(len(confidence), 1))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T); logits (N, C), labels (N,)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(nll)
    return float(log_t.detach().exp())


@torch.no_grad()  # not inference_mode: the temperature fit differentiates through the logits
def raw_logits(model: torch.nn.Module, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's uncalibrated logits (N, C) and the labels (N,) over a dataset."""
    out, labels = [], []
    for x, y in DataLoader(ds, batch_size=500):
        out.append(model(x).float())
        labels.append(y)
    return torch.cat(out), torch.cat(labels)


def held_out_digits(data_dir: str | None, seed: int = 0):
    """The validation images (as training split them), clean and webcam-augmented."""
    from backend.training.data import Styled, train_transform, train_val_split

    _, val = train_val_split(data_dir, seed=seed)
    torch.manual_seed(seed)  # the augmented copy is drawn in order, so the same every time
    augmented = Subset(Styled(val.dataset.base, train_transform("webcam")), val.indices)
    return torch.utils.data.ConcatDataset([val, augmented])


def calibrate(checkpoint: str, out: str, data_dir: str | None) -> dict:
    """Fit T on the held-out digits and write `checkpoint` with it (weights only) to `out`."""
    model, ckpt = load_model(checkpoint)
    logits, labels = raw_logits(model, held_out_digits(data_dir, int(ckpt.get("train_config", {}).get("seed", 0))))
    t = fit_temperature(logits, labels)
    conf_before = logits.softmax(1).max(1)
    conf_after = (logits / t).softmax(1).max(1)
    correct = (logits.argmax(1) == labels).numpy()
    report = {"temperature": t, "n": len(labels), "accuracy": float(correct.mean()),
              "ece_before": float(expected_calibration_error(conf_before.values.numpy(), correct)),
              "ece_after": float(expected_calibration_error(conf_after.values.numpy(), correct))}
    cfg = replace(model.cfg, temperature=t)
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "best_val_acc")}
    save_atomic({**keep, "config": cfg.to_dict(), "calibration": report}, out)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.training.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (its config's temperature is refitted)")
    p.add_argument("--out", required=True, help="calibrated weights-only checkpoint to write")
    p.add_argument("--data-dir", default=None, help="MNIST root holding MNIST/raw (default: $DIGITS_DATA_DIR)")
    args = p.parse_args(argv)
    try:
        r = calibrate(args.checkpoint, args.out, args.data_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: temperature {r['temperature']:.3f}; on {r['n']} held-out digits "
          f"(accuracy {r['accuracy']:.4f}) ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
