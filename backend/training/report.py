"""Pictures of a trained model: training curves and an attention gallery.

  python main.py --report --checkpoint runs/train/best.pt     (curves + gallery)
  python main.py --eval --report ...                         (the same, plus the test-set report)

Training curves come from the history stored inside the checkpoint, which a fine-tuning run
(--init) carries over from the weights it started from, so every phase shows; or from a
metrics.jsonl that training appends to in its --out folder (one JSON object per epoch).
The attention gallery shows test digits with the CLS token's attention in every layer (heads
averaged) and the attention rollout over all layers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from backend.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from backend.errors import UserError
from backend.frame.mnist import denormalize
from backend.model.vit import VisionTransformer, attention_rollout, last_layer_cls_attention


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.jsonl, one per epoch. A resumed run may repeat epochs: the last row wins."""
    rows: dict[tuple[int, int], dict] = {}
    try:
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}: line {n} is not JSON") from None
                rows[int(row.get("phase", 0)), int(row["epoch"])] = row
    except OSError as e:
        raise UserError(f"cannot read training log {path}: {e.strerror or e}") from None
    return [rows[k] for k in sorted(rows)]


def plot_training_curves(rows: list[dict], path: str | os.PathLike, title: str = "Training") -> None:
    """Loss and accuracy per epoch (train and validation) and the learning rate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not rows:
        raise UserError("no training metrics to plot (empty log)")
    ep = list(range(1, len(rows) + 1))  # epochs counted across the phases (--init runs)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(ep, [r["train_loss"] for r in rows], "o-", ms=3, label="train (augmented)")
    ax_loss.plot(ep, [r["val_loss"] for r in rows], "o-", ms=3, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(ep, [r.get("lr", np.nan) for r in rows], color="0.6", lw=1, ls="--", label="learning rate")
    ax_lr.set_ylabel("learning rate (end of epoch)", color="0.4")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    lines = ax_loss.get_legend_handles_labels()
    extra = ax_lr.get_legend_handles_labels()
    ax_loss.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8)
    ax_acc.plot(ep, [100 * r["train_acc"] for r in rows], "o-", ms=3, label="train (augmented)")
    best = max(range(len(rows)), key=lambda i: rows[i]["val_acc"])
    ax_acc.plot(ep, [100 * r["val_acc"] for r in rows], "o-", ms=3,
                label=f"validation (best {100 * rows[best]['val_acc']:.2f} % at epoch {ep[best]})")
    ax_acc.set(xlabel="epoch", ylabel="accuracy [%]", title="Accuracy")
    ax_acc.legend(fontsize=8)
    starts = [i for i in range(1, len(rows)) if rows[i].get("phase", 0) != rows[i - 1].get("phase", 0)]
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for i in starts:  # a new phase started from the previous one's weights (--init)
            ax.axvline(i + 0.5, color="0.5", lw=0.8, ls=":")
    secs = sum(r.get("epoch_time_s", 0.0) for r in rows)
    world = rows[-1].get("world_size", 1)
    phases = f" in {len(starts) + 1} phases" if starts else ""
    fig.suptitle(f"{title}: {len(rows)} epochs{phases}, {secs / 60:.1f} min of training on {world} process(es)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def layer_maps(model: VisionTransformer, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) normalised images -> (per-layer CLS maps (N, depth, g, g), rollout (N, g, g), probs (N, 10))."""
    model.eval()
    with torch.inference_mode():
        logits, attn = model(images, return_attn=True)  # attn: (N, depth, heads, T, T)
        per_layer = torch.stack([last_layer_cls_attention(attn[:, : i + 1]) for i in range(attn.shape[1])], dim=1)
        return per_layer.numpy(), attention_rollout(attn).numpy(), logits.softmax(1).numpy()


def plot_attention_gallery(model: VisionTransformer, images: torch.Tensor, labels: np.ndarray,
                           path: str | os.PathLike) -> None:
    """One row per digit: the input, its CLS attention in each layer, and the rollout."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_layer, rollout, probs = layer_maps(model, images)
    n, depth = per_layer.shape[:2]
    pix = denormalize(images[:, 0].numpy())
    cols = depth + 2
    fig, axes = plt.subplots(n, cols, figsize=(cols * 1.15, n * 1.2 + 0.5), squeeze=False)

    def show(ax, img, heat=None):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        if heat is not None:
            # Smooth upsampling: the g x g grid stretched over the 28x28 digit.
            up = cv2.resize(heat.astype(np.float32), img.shape[::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)
            ax.imshow(up, cmap="inferno", alpha=0.6, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for i in range(n):
        pred = int(probs[i].argmax())
        show(axes[i, 0], pix[i])
        axes[i, 0].set_ylabel(f"{pred} ({probs[i, pred]:.2f})", fontsize=8,
                              color="black" if pred == labels[i] else "crimson")
        for l in range(depth):
            show(axes[i, l + 1], pix[i], per_layer[i, l])
        show(axes[i, -1], pix[i], rollout[i])
    for j, t in enumerate(["input"] + [f"layer {l + 1}" for l in range(depth)] + ["rollout"]):
        axes[0, j].set_title(t, fontsize=8)
    fig.suptitle("CLS attention per layer (heads averaged) and rollout; left: prediction (probability)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def one_per_class(data_dir: str | None, n_per_class: int = 1, scan: int = 2000) -> tuple[torch.Tensor, np.ndarray]:
    """The first test digit(s) of each class 0-9: (10*k, 1, 28, 28) normalised images and labels."""
    from backend.training.data import test_set

    ds = test_set(data_dir, scan)
    picked: dict[int, list] = {c: [] for c in range(10)}
    for i in range(len(ds)):
        x, y = ds[i]
        if len(picked[int(y)]) < n_per_class:
            picked[int(y)].append(x)
        if all(len(v) == n_per_class for v in picked.values()):
            break
    xs = [x for c in range(10) for x in picked[c]]
    ys = np.array([c for c in range(10) for _ in picked[c]])
    return torch.stack(xs), ys


def find_metrics_log(checkpoint: str | os.PathLike | None) -> Path | None:
    """metrics.jsonl beside the checkpoint (training writes both to its --out folder), if any."""
    p = Path(checkpoint or DEFAULT_CHECKPOINT).parent / "metrics.jsonl"
    return p if p.is_file() else None


def write_pictures(model: VisionTransformer, ckpt: dict, out: Path, data_dir: str | None,
                   metrics_log: str | os.PathLike | None, checkpoint: str | os.PathLike | None = None) -> list[Path]:
    """Training curves (when a log or a stored history exists) and the attention gallery, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    log = Path(metrics_log) if metrics_log else None if ckpt.get("history") else find_metrics_log(checkpoint)
    rows = read_metrics(log) if log else [dict(r) for r in ckpt.get("history", [])]
    if rows:
        plot_training_curves(rows, out / "training_curves.png", title=f"Training of {ckpt.get('preset', 'model')}")
        written.append(out / "training_curves.png")
    else:
        print("note: no metrics.jsonl beside the checkpoint and no history inside it: no training curves "
              "(pass --metrics RUN/metrics.jsonl)")
    images, labels = one_per_class(data_dir)
    plot_attention_gallery(model.cpu(), images, labels, out / "attention_gallery.png")
    written.append(out / "attention_gallery.png")
    return written


def write_report(checkpoint: str | os.PathLike | None, report_dir: str | os.PathLike, data_dir: str | None = None,
                 metrics_log: str | os.PathLike | None = None) -> list[Path]:
    """Load a checkpoint and write its pictures to `report_dir`; returns the files written."""
    model, ckpt = load_model(checkpoint)
    return write_pictures(model, ckpt, Path(report_dir), data_dir, metrics_log, checkpoint)
