#!/usr/bin/env python3
"""Digits Transformer: train and evaluate the Vision Transformer.

  python main.py --train [--preset accurate] [--epochs 15] [--out runs/train] [--resume]
  python main.py --eval  [--checkpoint artifacts/digits_vit.pt] [--report-dir reports/eval] [--report]
  python main.py --report --checkpoint runs/train/best.pt [--metrics runs/train/metrics.jsonl]
  python main.py --export-onnx [artifacts/digits_vit.onnx] [--checkpoint CKPT]
  python main.py --sweep artifacts/sweep_spec.json
  torchrun --nproc_per_node 2 main.py --train ...   (DistributedDataParallel)
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from backend.errors import UserError, non_negative_float, non_negative_int, positive_float, positive_int
from backend.model.config import DEFAULT_PRESET, PRESETS
from backend.model.device import DEVICES
from backend.frame.mnist import DATA_ENV
from backend.training.config import AUGMENTS, TrainConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", action="store_true", help="train a model (resumable, checkpoints every epoch)")
    mode.add_argument("--eval", action="store_true", help="evaluate a checkpoint on the 10,000 MNIST test images")
    mode.add_argument("--export-onnx", nargs="?", const="artifacts/digits_vit.onnx", default=None, metavar="OUT",
                      help="export the checkpoint to ONNX (dynamic batch) and check ONNX Runtime against PyTorch "
                           "(default OUT: %(const)s)")
    mode.add_argument("--sweep", default=None, metavar="SPEC.json",
                      help="train and compare every configuration of a model grid (see artifacts/sweep_spec.json)")
    p.add_argument("--report", action="store_true",
                   help="also draw training curves and an attention gallery (with --eval, or on its own)")
    p.add_argument("--metrics", default=None, metavar="JSONL",
                   help="training log for the curves (default: the history inside the checkpoint, else "
                        "metrics.jsonl beside it)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET, help="model size (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="epochs of the schedule (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="batch per process; effective batch = this x processes (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.lr,
                   help="peak AdamW learning rate; scale it with the effective batch (default: %(default)s)")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=d.warmup_epochs, help="linear warm-up (default: %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help=f"MNIST root holding MNIST/raw (default: ${DATA_ENV}, else ~/.cache/digits-transformer; downloads if missing)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="compute device (default: %(default)s)")
    p.add_argument("--out", default=d.out, help="training output folder (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue an interrupted run from CKPT (default: OUT/last.pt) with the settings it was "
                        "started with (flags given again must agree; --data-dir, --device, --workers may differ)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    p.add_argument("--workers", type=non_negative_int, default=d.workers, help="data loader processes (default: %(default)s)")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from these weights (fine-tuning, fresh schedule)")
    p.add_argument("--augment", choices=AUGMENTS, default="webcam",
                   help="webcam: the full webcam-crop augmentation (default); styles: that plus other hands' "
                        "strokes (bars on 7, flags on 1, elastic wobble, slant); light: small affine only, "
                        "for a last short phase at a low learning rate")
    p.add_argument("--teacher", default=None, metavar="CKPT",
                   help="distil this checkpoint: its logits on the training images become soft targets")
    p.add_argument("--distill", type=float, default=d.distill,
                   help="weight of the teacher's soft targets in the loss, 0-1 (default: %(default)s)")
    p.add_argument("--extra-data", default=None, metavar="NPZ",
                   help="extra 28x28 digits (images, labels) mixed into training, e.g. pipeline crops of synthetic scenes")
    p.add_argument("--limit", type=positive_int, default=None, help="use only this many images (quick checks)")
    p.add_argument("--checkpoint", default=None, help="checkpoint to evaluate (default: the shipped artifacts/digits_vit.pt)")
    p.add_argument("--report-dir", default="reports/eval", help="--eval writes metrics.json and PNGs here (default: %(default)s)")
    args = p.parse_args(argv)
    if not (args.train or args.eval or args.export_onnx or args.sweep or args.report):
        p.error("one of the arguments --train --eval --export-onnx --sweep --report is required")
    for action in p._actions:  # parsed again without defaults: the flags actually given (for --resume)
        action.default = argparse.SUPPRESS
    args.given = set(vars(p.parse_args(argv)))
    return args


def run(args: argparse.Namespace) -> int:
    if args.data_dir and not Path(args.data_dir).is_dir():  # torchvision would create it as a side effect
        raise UserError(f"--data-dir {args.data_dir}: no such folder (create it to download MNIST into it)")
    if args.train:
        from backend.training.train import resumed_config, train

        # Settings not given keep TrainConfig's defaults, or with --resume the interrupted run's own.
        tc = resumed_config({f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name in args.given})
        try:
            train(tc)
        except KeyboardInterrupt:
            if (Path(tc.out) / "last.pt").is_file():  # the run's settings are in it: this resumes as it was
                print(f"\ninterrupted; continue with: python main.py --train --out {shlex.quote(tc.out)} --resume",
                      file=sys.stderr)
            else:
                print("\ninterrupted before the first epoch ended; nothing to resume", file=sys.stderr)
            return 130
        return 0
    if args.export_onnx:
        from backend.model.onnx_engine import TOLERANCE, export_checkpoint
        from backend.training.data import test_batch

        diffs = export_checkpoint(args.checkpoint, args.export_onnx, test_batch(args.data_dir, args.limit or 512))
        print(f"wrote {args.export_onnx}; ONNX Runtime vs PyTorch on MNIST test digits: max |diff| "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + f" (tolerance {TOLERANCE:.0e})")
        return 0
    if args.sweep:
        from backend.training.sweep import sweep_from_file

        sweep_from_file(args.sweep, args.data_dir)
        return 0
    if args.eval:
        from backend.training.evaluate import evaluate

        metrics = evaluate(args.checkpoint, args.data_dir, args.device, args.report_dir, args.limit,
                           report=args.report, metrics_log=args.metrics)
        print(f"test_accuracy={metrics['accuracy']:.4f}")
        return 0
    from backend.training.report import write_report

    for path in write_report(args.checkpoint, args.report_dir, args.data_dir, args.metrics):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
