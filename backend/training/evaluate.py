"""Test-set evaluation: metrics JSON, confusion matrix and misclassified-digit grid."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from backend.model.checkpoint import load_model
from backend.training.calibrate import expected_calibration_error
from backend.training.data import test_set
from backend.model.device import resolve_device
from backend.frame.mnist import denormalize
from backend.model.vit import count_parameters


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int = 10) -> np.ndarray:
    """(n, n) counts, rows = true class, columns = predicted class."""
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def per_class(cm: np.ndarray) -> dict[str, dict[str, float]]:
    tp = np.diag(cm).astype(float)
    prec = tp / np.maximum(cm.sum(0), 1)
    rec = tp / np.maximum(cm.sum(1), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    return {str(c): {"precision": round(prec[c], 5), "recall": round(rec[c], 5), "f1": round(f1[c], 5),
                     "support": int(cm[c].sum())} for c in range(len(cm))}


def plot_confusion(cm: np.ndarray, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.4))
    shown = np.log1p(cm)  # the diagonal would wash out the few errors on a linear scale
    ax.imshow(shown, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > shown.max() * 0.6 else "black")
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10), title="Confusion matrix (MNIST test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_misclassified(images: np.ndarray, true: np.ndarray, pred: np.ndarray, conf: np.ndarray, path: Path,
                       max_items: int = 64) -> None:
    """Grid of misclassified digits titled 'pred (conf) / true'."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(images), max_items)
    cols = 8
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{pred[k]} ({conf[k]:.2f}) / {true[k]}", fontsize=7, color="crimson")
    fig.suptitle(f"Misclassified test digits: predicted (confidence) / true — {len(images)} in all", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.inference_mode()
def evaluate(checkpoint: str | None, data_dir: str | None, device: str = "auto", report_dir: str = "reports/eval",
             limit: int | None = None, report: bool = False, metrics_log: str | None = None) -> dict:
    """Evaluate a checkpoint on the MNIST test set and write the report folder; returns the metrics.

    report: also draw training curves and the attention gallery (backend.training.report); metrics_log is
    the training log for the curves (default: metrics.jsonl beside the checkpoint).
    """
    model, ckpt = load_model(checkpoint)
    dev = resolve_device(device)
    model.to(dev)
    ds = test_set(data_dir, limit)
    loader = DataLoader(ds, batch_size=500)
    preds, confs, labels, images = [], [], [], []
    t_model = 0.0
    for x, y in tqdm(loader, desc="MNIST test", unit="batch", leave=False, dynamic_ncols=True):
        x = x.to(dev)
        t0 = time.perf_counter()
        probs = (model(x).float() / model.cfg.temperature).softmax(1)  # calibrated, as at run time
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_model += time.perf_counter() - t0
        c, p = probs.max(1)
        preds.append(p.cpu().numpy())
        confs.append(c.cpu().numpy())
        labels.append(y.numpy())
        images.append(denormalize(x[p != y.to(dev)].cpu().numpy()[:, 0]))  # only the misread ones are drawn
    pred, conf, true, wrong_imgs = (np.concatenate(a) for a in (preds, confs, labels, images))
    cm = confusion(true, pred)
    wrong = np.flatnonzero(pred != true)
    metrics = {
        "accuracy": float((pred == true).mean()),
        "ece": expected_calibration_error(conf, pred == true),
        "temperature": model.cfg.temperature,
        "n_test": int(len(true)),
        "errors": int(len(wrong)),
        "per_class": per_class(cm),
        "params": count_parameters(model),
        "preset": ckpt.get("preset"),
        "config": dict(ckpt["config"]),
        "device": str(dev),
        "mean_inference_ms_per_image": round(t_model / len(true) * 1e3, 4),
        "batch_size": 500,
        "confusion_matrix": cm.tolist(),
    }
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(cm, out / "confusion_matrix.png")
    plot_misclassified(wrong_imgs, true[wrong], pred[wrong], conf[wrong], out / "misclassified.png")
    pictures = ["metrics.json", "confusion_matrix.png", "misclassified.png"]
    if report:
        from backend.training.report import write_pictures

        pictures += [p.name for p in write_pictures(model, ckpt, out, data_dir, metrics_log, checkpoint)]
    print(f"report written to {out}/ ({', '.join(pictures)})")
    return metrics
