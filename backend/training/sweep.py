"""Model search: train every configuration of a grid for a fixed budget, compare, plot.

  python main.py --sweep artifacts/sweep_spec.json

The spec (JSON) names a base preset, a grid over ViTConfig fields (patch size, width, depth,
heads, MLP ratio, ...) and/or an explicit list of configurations, and the training budget that
each one gets. Every configuration is trained with backend.training.train.train (so runs resume when the
sweep is interrupted and started again), then scored on MNIST test digits and timed on the CPU.
Results: a CSV table and a PNG of accuracy against parameters and against inference latency,
with the Pareto front (no other configuration is both more accurate and smaller/faster) marked.
"""
from __future__ import annotations

import csv
import itertools
import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from backend.timing import timed_ms
from backend.model.checkpoint import load_model
from backend.training.data import test_set
from backend.errors import UserError
from backend.model.vit import PRESETS, ViTConfig, VisionTransformer, count_parameters
from backend.training.train import TrainConfig, evaluate_loader, train

GRID_FIELDS = {f.name for f in fields(ViTConfig)}
TRAIN_FIELDS = {"epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "limit", "seed",
                "workers", "device"}


@dataclass
class SweepSpec:
    base: str = "accurate"  # preset whose fields the grid and configs override
    grid: dict[str, list] = field(default_factory=dict)  # ViTConfig field -> values; the product is swept
    configs: list[dict] = field(default_factory=list)  # extra configurations (overrides of base), each a dict
    train: dict = field(default_factory=dict)  # TrainConfig fields for every run (the budget)
    runs_dir: str = "runs/sweep"  # one training folder per configuration
    results: str = "artifacts/sweep"  # writes RESULTS.csv and RESULTS.png
    n_test: int = 10000  # MNIST test images to score on
    latency_batch: int = 16  # batch size of the latency figure (crops of a busy frame)
    latency_threads: int = 1  # torch CPU threads while timing
    latency_seconds: float = 0.3  # timing per model and round (three rounds, the best kept)

    @classmethod
    def load(cls, path: str | Path) -> "SweepSpec":
        try:
            d = json.loads(Path(path).read_text())
        except OSError as e:
            raise UserError(f"cannot read sweep spec {path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"sweep spec {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(d, dict):
            raise UserError(f"sweep spec {path} must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"sweep spec {path}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        spec = cls(**d)
        spec.validate(str(path))
        return spec

    def validate(self, where: str = "sweep spec") -> None:
        if self.base not in PRESETS:
            raise UserError(f"{where}: unknown base preset {self.base!r}; choose one of {', '.join(PRESETS)}")
        if not isinstance(self.grid, dict) or not isinstance(self.configs, list) \
                or not all(isinstance(c, dict) for c in self.configs):
            raise UserError(f"{where}: 'grid' must be an object of lists and 'configs' a list of objects")
        bad = set(self.grid).union(*(set(c) for c in self.configs)) - GRID_FIELDS
        if bad:
            raise UserError(f"{where}: unknown model fields {sorted(bad)}; known: {sorted(GRID_FIELDS)}")
        if any(not isinstance(v, list) or not v for v in self.grid.values()):
            raise UserError(f"{where}: every grid entry must be a non-empty list of values")
        bad = set(self.train) - TRAIN_FIELDS
        if bad:
            raise UserError(f"{where}: unknown train keys {sorted(bad)}; known: {sorted(TRAIN_FIELDS)}")


def expand(spec: SweepSpec) -> tuple[list[ViTConfig], list[str]]:
    """The configurations to train (grid product, then explicit ones, duplicates dropped) and
    a note for each grid point that is not a valid model."""
    base = PRESETS[spec.base]
    keys = sorted(spec.grid)
    overrides = [dict(zip(keys, vals)) for vals in itertools.product(*(spec.grid[k] for k in keys))] if keys else []
    overrides += spec.configs
    if not overrides:
        overrides = [{}]
    configs, skipped = [], []
    for o in overrides:
        try:
            cfg = replace(base, **o)  # ViTConfig refuses what no model can be built from
            VisionTransformer(cfg)
        except ValueError as e:
            skipped.append(f"{', '.join(f'{k}={v}' for k, v in o.items())}: {e}")
            continue
        if cfg not in configs:
            configs.append(cfg)
    return configs, skipped


def config_name(cfg: ViTConfig) -> str:
    """A short, unique, file-system-safe name, e.g. 's32x4-p7-d128-L6-h4-m2' (stem of 32
    channels shrinking 4x, 7-pixel patches, width 128, 6 blocks, 4 heads, MLP ratio 2)."""
    mlp = f"{cfg.mlp_ratio:g}".replace(".", "_")
    stem = f"s{cfg.stem_channels}x{cfg.stem_stride}" if cfg.stem_channels else "s0"
    return f"{stem}-p{cfg.patch_size}-d{cfg.embed_dim}-L{cfg.depth}-h{cfg.num_heads}-m{mlp}"


def cpu_latency_ms(model: torch.nn.Module, batch: int, threads: int, seconds: float = 0.5) -> float:
    """Median forward time (with attention, as the recognizer runs it) of `batch` crops on the CPU."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.eval().cpu()
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            return float(np.median(timed_ms(lambda: model(x, return_attn=True), seconds)))
    finally:
        torch.set_num_threads(prev)


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Boolean mask of points that no other point beats on both: lower-or-equal cost with higher
    accuracy, or lower cost with equal-or-higher accuracy."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    keep = np.ones(len(cost), bool)
    for i in range(len(cost)):
        better = ((cost <= cost[i]) & (acc > acc[i])) | ((cost < cost[i]) & (acc >= acc[i]))
        keep[i] = not better.any()
    return keep


def run_sweep(spec: SweepSpec, data_dir: str | None = None) -> list[dict]:
    """Train, score and time every configuration; write RESULTS.csv and RESULTS.png; return the rows."""
    configs, skipped = expand(spec)
    for note in skipped:
        print(f"skipping {note}")
    if not configs:
        raise UserError("the sweep spec describes no valid configuration")
    print(f"sweep: {len(configs)} configuration(s), budget {spec.train or 'TrainConfig defaults'}")
    test_dl = DataLoader(test_set(data_dir, spec.n_test), batch_size=500)
    default = PRESETS["accurate"]
    rows, models = [], []
    for k, cfg in enumerate(configs, 1):
        name = config_name(cfg)
        out = Path(spec.runs_dir) / name
        tc = TrainConfig(**{**spec.train, "preset": f"sweep:{name}", "model_config": cfg.to_dict(), "out": str(out),
                            "data_dir": data_dir, "resume": "auto" if (out / "last.pt").is_file() else None})
        print(f"[{k}/{len(configs)}] {name}")
        t0 = time.time()
        last = train(tc)
        train_s = time.time() - t0
        model, ckpt = load_model(out / "best.pt")
        _, test_acc = evaluate_loader(model, test_dl, torch.device("cpu"))
        history = ckpt.get("history", [])
        row = {"name": name, **{f: getattr(cfg, f) for f in ("patch_size", "stem_channels", "stem_stride",
                                                              "embed_dim", "depth", "num_heads", "mlp_ratio")},
               "tokens": cfg.grid**2 + 1, "params": count_parameters(model), "test_acc": round(test_acc, 5),
               "val_acc": round(float(ckpt.get("val_acc", last.get("val_acc", float("nan")))), 5),
               "epochs": len(history), "train_s": round(sum(h.get("epoch_time_s", 0.0) for h in history) or train_s, 1),
               "is_default": cfg == replace(default, drop_path=cfg.drop_path, dropout=cfg.dropout)}
        rows.append(row)
        models.append(model)
        print(f"    params={row['params']:,} test_acc={row['test_acc']:.4f}")
    # Timed together at the end, in rounds, keeping each model's best round: load from other
    # processes then inflates all of them alike instead of whichever trained at a busy moment.
    lat_key = f"latency_b{spec.latency_batch}_ms"
    best = [float("inf")] * len(models)
    for _ in range(3):
        for i, m in enumerate(models):
            best[i] = min(best[i], cpu_latency_ms(m, spec.latency_batch, spec.latency_threads, spec.latency_seconds))
    for r, t in zip(rows, best):
        r[lat_key] = round(t, 3)
        print(f"{r['name']}: params={r['params']:,} test_acc={r['test_acc']:.4f} {lat_key}={t:.2f}")
    acc = np.array([r["test_acc"] for r in rows])
    for key, col in (("params", "pareto_params"), (lat_key, "pareto_latency")):
        front = pareto_front(np.array([r[key] for r in rows]), acc)
        for r, f in zip(rows, front):
            r[col] = bool(f)
    results = Path(spec.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    write_csv(rows, results.with_suffix(".csv"))
    plot_sweep(rows, results.with_suffix(".png"), lat_key, spec)
    print(f"wrote {results.with_suffix('.csv')} and {results.with_suffix('.png')}")
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot_sweep(rows: list[dict], path: Path, lat_key: str, spec: SweepSpec) -> None:
    """Accuracy vs parameters and vs CPU latency; Pareto front joined by a line, default starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = np.array([r["test_acc"] for r in rows]) * 100
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, key, col, label in ((axes[0], "params", "pareto_params", "parameters"),
                                (axes[1], lat_key, "pareto_latency",
                                 f"CPU latency, batch {spec.latency_batch}, {spec.latency_threads} thread(s) [ms]")):
        x = np.array([r[key] for r in rows], float)
        front = np.array([r[col] for r in rows])
        ax.scatter(x[~front], acc[~front], c="0.6", s=36, label="configuration", zorder=2)
        ax.scatter(x[front], acc[front], c="tab:red", s=46, label="Pareto front", zorder=3)
        order = np.argsort(x[front])
        ax.plot(x[front][order], acc[front][order], c="tab:red", lw=1.2, zorder=1)
        for r, xi, yi in zip(rows, x, acc):
            ax.annotate(r["name"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if r["is_default"]:
                ax.scatter([xi], [yi], marker="*", s=260, facecolors="none", edgecolors="k", linewidths=1.2,
                           label="shipped default (accurate)", zorder=4)
        ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="MNIST test accuracy [%]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    budget = ", ".join(f"{k}={v}" for k, v in spec.train.items())
    fig.suptitle(f"Model sweep ({len(rows)} configurations; budget: {budget or 'defaults'})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_from_file(path: str, data_dir: str | None = None) -> list[dict]:
    return run_sweep(SweepSpec.load(path), data_dir)

