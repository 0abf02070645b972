#!/usr/bin/env python3
"""Digits Transformer live: read handwritten digits from a webcam, a video, images or a demo scene.

  python camera_inferencer.py                          # first webcam, with a window
  python camera_inferencer.py --source demo            # built-in moving sheet of digits, no webcam
  python camera_inferencer.py --draw                   # draw digits with the mouse
  python camera_inferencer.py --source clip.mp4 --record out.mp4
  python camera_inferencer.py --source photos/ --no-display --jsonl out.jsonl

keys (in the window):
  q / Esc   quit                      a   attention heatmaps on/off
  space     pause / resume            m   model-input inset (the 28x28 crops) on/off
  r         start / stop recording    d   debug view: threshold mask and candidate boxes
  s         snapshot PNG              h   help overlay
  c         clear the draw pad (--draw)

exit codes: 0 done, 1 the camera or stream failed, 2 bad input (flag, file, checkpoint, display),
130 / 143 interrupted (Ctrl+C / SIGTERM) -- any recording is finalised in every case.
"""
from __future__ import annotations

import argparse
import sys

from backend.model.device import BACKENDS, DEVICES
from backend.errors import UserError, positive_float, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0",
                   help="camera index, 'demo', an image, a folder of images (sorted) or a video file (default: 0)")
    p.add_argument("--draw", action="store_true", help="draw digits with the mouse instead of a source (c clears)")
    p.add_argument("--no-display", action="store_true", help="run without a window (use with --record / --jsonl)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--record", default=None, metavar="OUT.mp4",
                   help="record the annotated video from the start (.mp4, .avi or .mkv)")
    p.add_argument("--jsonl", default=None, metavar="OUT.jsonl", help="write one JSON record per frame")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped artifacts/digits_vit.pt)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="compute device (default: %(default)s)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference engine: torch, onnx (ONNX Runtime, CPU) or auto = onnx on the CPU when "
                        "onnxruntime is installed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU inference threads (default: half the cores, 1-4)")
    p.add_argument("--width", type=positive_int, default=None, help="requested camera width (demo: frame width)")
    p.add_argument("--height", type=positive_int, default=None, help="requested camera height (demo: frame height)")
    p.add_argument("--fps", type=positive_float, default=None, help="requested camera frame rate (demo: its rate)")
    p.add_argument("--max-side", type=positive_int, default=None, metavar="PX",
                   help="downscale frames whose longer side exceeds PX first (default: 4096)")
    p.add_argument("--no-track", action="store_true", help="show each frame's raw readings, without smoothing")
    p.add_argument("--data-dir", default=None, help="MNIST folder for the demo scene (default: $DIGITS_DATA_DIR)")
    p.add_argument("--recordings-dir", default="recordings", help="where the r key records (default: %(default)s)")
    p.add_argument("--snapshots-dir", default="snapshots", help="where the s key saves PNGs (default: %(default)s)")
    args = p.parse_args(argv)
    if args.draw and args.no_display:
        p.error("--draw needs a window; leave out --no-display")
    return args


def run(args: argparse.Namespace) -> int:
    from backend.live.app import AppConfig, describe, run_app
    from backend.live.overlay import OverlayConfig
    from backend.frame.pipeline import Pipeline
    from backend.model.recognizer import Recognizer
    from backend.live.sources import MAX_SIDE, DrawPad, open_source

    cfg = AppConfig(display=not args.no_display, max_frames=args.max_frames, record=args.record, jsonl=args.jsonl,
                    track=False if args.no_track else None, max_side=args.max_side or MAX_SIDE,
                    recordings_dir=args.recordings_dir, snapshots_dir=args.snapshots_dir, overlay=OverlayConfig())
    recognizer = Recognizer(args.checkpoint, args.device, backend=args.backend, threads=args.threads)
    if args.draw:
        source = DrawPad(args.width or 960, args.height or 540)
    else:
        source = open_source(args.source, args.width, args.height, args.fps, realtime=cfg.display,
                             data_dir=args.data_dir)
    try:
        summary = run_app(source, Pipeline(recognizer), cfg, device=f"{recognizer.device} {recognizer.backend}",
                          model=f"{recognizer.name} ({recognizer.params / 1e6:.2f} M params)")
    finally:
        source.release()
    if args.no_display or args.record or args.jsonl:
        print(describe(summary), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from backend.live.app import Interrupted

    try:
        return run(args)
    except UserError as e:  # SourceError included (exit code 1)
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (Interrupted, KeyboardInterrupt) as e:
        signum = getattr(e, "signum", 2)
        print(f"interrupted ({getattr(e, 'args', ['SIGINT'])[0] or 'SIGINT'}); outputs finalised", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
