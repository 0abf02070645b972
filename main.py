#!/usr/bin/env python3
"""Digits Transformer: train and evaluate the Vision Transformer.

  python main.py --train [--preset accurate] [--epochs 15] [--out runs/train] [--resume]
  python main.py --eval  [--checkpoint artifacts/digits_vit.pt] [--report-dir reports/eval]
  torchrun --nproc_per_node 2 main.py --train ...   (DistributedDataParallel)
"""
from __future__ import annotations

import argparse
import sys

from backend.data import DATA_ENV
from backend.device import DEVICES
from backend.errors import UserError
from backend.model import DEFAULT_PRESET, PRESETS
from backend.train import TrainConfig


def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--train", action="store_true", help="train a model (resumable, checkpoints every epoch)")
    mode.add_argument("--eval", action="store_true", help="evaluate a checkpoint on the 10,000 MNIST test images")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET, help="model size (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="epochs of the schedule (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="batch per process; effective batch = this x processes (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.lr,
                   help="peak AdamW learning rate; scale it with the effective batch (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (default: %(default)s)")
    p.add_argument("--data-dir", default=None,
                   help=f"MNIST root holding MNIST/raw (default: ${DATA_ENV}, else ~/.cache/digits-transformer; downloads if missing)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="compute device (default: %(default)s)")
    p.add_argument("--out", default=d.out, help="training output folder (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue an interrupted run from CKPT (default: OUT/last.pt)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers, help="data loader processes (default: %(default)s)")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from these weights (fine-tuning, fresh schedule)")
    p.add_argument("--extra-data", default=None, metavar="NPZ",
                   help="extra 28x28 digits (images, labels) mixed into training, e.g. pipeline crops of synthetic scenes")
    p.add_argument("--limit", type=positive_int, default=None, help="use only this many images (quick checks)")
    p.add_argument("--checkpoint", default=None, help="checkpoint to evaluate (default: the shipped artifacts/digits_vit.pt)")
    p.add_argument("--report-dir", default="reports/eval", help="--eval writes metrics.json and PNGs here (default: %(default)s)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.train:
        from backend.train import train

        tc = TrainConfig(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, data_dir=args.data_dir,
                         device=args.device, out=args.out, resume=args.resume, seed=args.seed,
                         workers=args.workers, limit=args.limit, init=args.init, extra_data=args.extra_data)
        try:
            train(tc)
        except KeyboardInterrupt:
            print(f"\ninterrupted; continue with: python main.py --train --out {args.out} --resume", file=sys.stderr)
            return 130
        return 0
    from backend.evaluate import evaluate

    metrics = evaluate(args.checkpoint, args.data_dir, args.device, args.report_dir, args.limit)
    print(f"test_accuracy={metrics['accuracy']:.4f}")
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
