#!/usr/bin/env python3
"""Digits Transformer live: read handwritten digits from a webcam, a video, images or a demo scene.

  python camera_inferencer.py                          # first webcam, with a window
  python camera_inferencer.py --source demo            # built-in moving sheet of digits, no webcam
  python camera_inferencer.py --draw                   # draw digits with the mouse
  python camera_inferencer.py --source clip.mp4 --record out.mkv
  python camera_inferencer.py --source photos/ --no-display --jsonl out.jsonl
  python camera_inferencer.py --web                    # in the browser: upload, draw, webcam

keys (in the window):
  q / Esc   quit                      a   attention heatmaps on/off
  space     pause / resume            m   model-input inset (the 28x28 crops) on/off
  r         start / stop recording    d   debug view: threshold mask and candidate boxes
  s         snapshot PNG              h   help overlay
  c         clear the draw pad (--draw)   n / p   next / previous image (a folder waits on each)

exit codes: 0 done, 1 the camera or stream failed, 2 bad input (flag, file, checkpoint, display,
an output that would overwrite an input), 3 an output could not be written (disk full),
130 / 143 interrupted (Ctrl+C / SIGTERM) -- the recording is playable and the JSONL holds whole lines
in every case; after a hard kill (SIGKILL, out of memory) too for .mkv and .avi, not .mp4.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace

from backend.model.device import BACKENDS, DEVICES, PRECISIONS
from backend.errors import UserError, positive_float, positive_int, probability
from backend.frame.pipeline import PipelineConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = PipelineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0",
                   help="camera index, 'demo', an image, a folder of images (sorted) or a video file (default: 0)")
    p.add_argument("--draw", action="store_true", help="draw digits with the mouse instead of a source (c clears)")
    p.add_argument("--no-display", action="store_true", help="run without a window (use with --record / --jsonl)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--record", default=None, metavar="OUT.mkv",
                   help="record the annotated video from the start (.mkv or .avi: playable even after a hard "
                        "kill; .mp4: not then)")
    p.add_argument("--record-raw", default=None, metavar="RAW.mkv",
                   help="record the frames as read, without the overlay, to run through the tool again")
    p.add_argument("--jsonl", default=None, metavar="OUT.jsonl", help="write one JSON record per frame")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped artifacts/digits_vit.pt)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="compute device (default: %(default)s)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="inference engine: torch, onnx (ONNX Runtime, CPU) or auto = onnx on the CPU when "
                        "onnxruntime is installed (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU inference threads (default: half the cores, 1-4)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="GPU arithmetic: auto = bf16 where the GPU has it, else fp16; fp32 on the CPU "
                        "(default: %(default)s)")
    p.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="run this file from main.py --export-onnx (of --checkpoint) on ONNX Runtime instead of "
                        "exporting the checkpoint at start-up")
    p.add_argument("--width", type=positive_int, default=None, help="requested camera width (demo: frame width)")
    p.add_argument("--height", type=positive_int, default=None, help="requested camera height (demo: frame height)")
    p.add_argument("--fps", type=positive_float, default=None, help="requested camera frame rate (demo: its rate)")
    p.add_argument("--max-megapixels", type=positive_float, default=100.0, metavar="MP",
                   help="refuse images over MP million pixels, from their header, before decoding "
                        "(default: %(default)g)")
    p.add_argument("--max-side", type=positive_int, default=None, metavar="PX",
                   help="downscale frames whose longer side exceeds PX first (default: 4096)")
    p.add_argument("--no-track", action="store_true", help="show each frame's raw readings, without smoothing")
    p.add_argument("--min-confidence", type=probability, default=d.min_confidence, metavar="P",
                   help="report a candidate as a digit only from this confidence (0-1) up (default: %(default)s)")
    p.add_argument("--work-size", type=positive_int, default=d.detect.work_size, metavar="PX",
                   help="detect digits at this longest side; more finds smaller digits, slower "
                        "(default: %(default)s)")
    p.add_argument("--max-digits", type=positive_int, default=d.detect.max_digits, metavar="N",
                   help="read at most N digit candidates per frame (default: %(default)s)")
    p.add_argument("--list-cameras", action="store_true", help="list the cameras that open (indices 0-9) and exit")
    p.add_argument("--web", action="store_true",
                   help="serve the browser app instead (upload a photo, draw, webcam) and print its address")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the browser app listens on (default: %(default)s, this machine only; "
                        "0.0.0.0 serves other machines)")
    p.add_argument("--port", type=positive_int, default=7860, help="port of the browser app (default: %(default)s)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="draw the demo scene from the MNIST test set in DIR (default: the 300 shipped digits)")
    p.add_argument("--recordings-dir", default="recordings", help="where the r key records (default: %(default)s)")
    p.add_argument("--snapshots-dir", default="snapshots", help="where the s key saves PNGs (default: %(default)s)")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    if args.threads and args.threads > cores:  # more only waits on itself (5000 threads: minutes per image)
        print(f"warning: --threads {args.threads} is more than the {cores} cores; using {cores}", file=sys.stderr)
        args.threads = cores
    if args.draw and args.no_display:
        p.error("--draw needs a window; leave out --no-display")
    return args


def check_display(args: argparse.Namespace) -> None:
    """Fail at once, before the model loads, when a window is wanted and cannot open here."""
    from backend.live.app import display_problem

    problem = display_problem() if not args.no_display else None
    if problem and args.draw:
        raise UserError(f"{problem}; --draw needs a window: run it where a display is, or read a photo of "
                        "your digits: --source photo.jpg --no-display --jsonl out.jsonl")
    if problem:
        raise UserError(f"{problem}; run with --no-display (add --record OUT.mkv or --jsonl OUT.jsonl)")


def list_cameras() -> int:
    from backend.live.sources import list_cameras as probe

    found = probe()
    for index, width, height in found:
        print(f"{index}: {width}x{height}  (--source {index})")
    if not found:
        print("no camera opens at indices 0-9 (try --source demo, a video or an image)")
    return 0


def recognizer_config(args: argparse.Namespace):
    """--device, --backend, --threads, --precision and --onnx as a RecognizerConfig (imports torch),
    with torch's process-wide inference threads set."""
    from backend.process import set_torch_threads
    from backend.model.recognizer import RecognizerConfig

    set_torch_threads(args.threads)
    backend = "onnx" if args.onnx and args.backend == "auto" else args.backend
    return RecognizerConfig(args.device, backend, args.threads, args.precision, args.onnx)


def web(args: argparse.Namespace) -> int:
    if args.onnx:
        raise UserError("--onnx runs one model; the browser app exports each of its models at start-up")
    from backend.live.web import serve
    from backend.live.web_reading import MODEL_FILES, Models

    files = {os.path.basename(args.checkpoint): args.checkpoint, **MODEL_FILES} if args.checkpoint else MODEL_FILES
    serve(Models(files, recognizer_config(args)), args.host, args.port)
    return 0


def run(args: argparse.Namespace) -> int:
    from backend.live.sources import refuse_overwrites

    refuse_overwrites("" if args.draw else args.source,
                      {"--record": args.record, "--jsonl": args.jsonl, "--record-raw": args.record_raw})
    if args.data_dir and not os.path.isdir(args.data_dir):  # the demo would create it as a side effect
        raise UserError(f"--data-dir {args.data_dir}: no such folder")
    for what, path in (("checkpoint", args.checkpoint), ("ONNX file", args.onnx)):  # before torch is imported (seconds)
        if path and not os.path.isfile(path):
            raise UserError(f"{what} not found: {path}")
    check_display(args)
    from backend.live.app import AppConfig, describe, run_app
    from backend.live.overlay import OverlayConfig
    from backend.frame.pipeline import Pipeline
    from backend.live.sources import MAX_SIDE, DrawPad, open_source

    cfg = AppConfig(display=not args.no_display, max_frames=args.max_frames, record=args.record,
                    record_raw=args.record_raw, jsonl=args.jsonl,
                    track=False if args.no_track else None, max_side=args.max_side or MAX_SIDE,
                    recordings_dir=args.recordings_dir, snapshots_dir=args.snapshots_dir, overlay=OverlayConfig())
    if args.draw:
        source = DrawPad(args.width or 960, args.height or 540)
    else:  # a missing file or camera is reported before the model loads
        source = open_source(args.source, args.width, args.height, args.fps, realtime=cfg.display,
                             data_dir=args.data_dir, max_pixels=round(args.max_megapixels * 1e6))
    try:
        from backend.model.recognizer import Recognizer

        recognizer = Recognizer(args.checkpoint, recognizer_config(args))
        pcfg = PipelineConfig(min_confidence=args.min_confidence)
        pcfg.detect = replace(pcfg.detect, work_size=args.work_size, max_digits=args.max_digits)
        summary = run_app(source, Pipeline(recognizer, pcfg), cfg, device=f"{recognizer.device} {recognizer.backend}",
                          model=f"{recognizer.name} ({recognizer.params / 1e6:.2f} M params)")
    finally:
        source.release()
    if args.no_display or args.record or args.record_raw or args.jsonl:
        print(describe(summary), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from backend.live.app import Interrupted
    from backend.process import tune_process

    tune_process()

    try:
        return list_cameras() if args.list_cameras else web(args) if args.web else run(args)
    except UserError as e:  # SourceError included (exit code 1)
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (Interrupted, KeyboardInterrupt) as e:
        # The outputs are final by now; more Ctrl+C while the threads wind down would only print tracebacks.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name}); outputs finalised", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
