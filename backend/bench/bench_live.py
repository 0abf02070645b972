"""Live-app figures: headless FPS on the demo and on a 640x480 video, flicker with and without smoothing.

  python -m backend.bench.bench_live --frames 300 [--hard] [--checkpoint CKPT] [--device cpu]

Renders the demo scene (gently moving handwritten digits) into a 640x480 video, runs the whole
headless loop on it and on the live demo source, then measures flicker: the fraction of
frame-to-frame label changes of each tracked digit (the sheet's digits never change, so every
change is a flicker), once with the tracker's smoothing and once with raw per-frame labels.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np

from backend.live.app import AppConfig, run_app
from backend.frame.pipeline import Pipeline
from backend.model.recognizer import Recognizer
from backend.live.recorder import VideoRecorder
from backend.live.sources import DemoSource, VideoFileSource
from backend.live.tracking import Tracker, TrackerConfig, flicker_rate


def track_labels(results, cfg: TrackerConfig, min_len: int = 10) -> list[list[int]]:
    """Per track lasting at least min_len frames, its shown label in each frame it was shown."""
    tracker = Tracker(cfg)
    seqs: dict[int, list[int]] = {}
    for r in results:
        out = tracker.update(r.detections, r.rejected)
        for tid, d in zip(out.track_ids, out.digits):
            seqs.setdefault(int(tid), []).append(int(d))
    return [s for s in seqs.values() if len(s) >= min_len]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--hard", action="store_true",
                   help="degrade the video like a poor webcam: half resolution, blur, strong sensor noise")
    args = p.parse_args(argv)

    rec = Recognizer(args.checkpoint, args.device)
    pipe = Pipeline(rec)
    print(f"model {rec.name} on {rec.device}, torch threads {__import__('torch').get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "demo640.mp4")
        demo = DemoSource(fps=30, data_dir=args.data_dir)
        with VideoRecorder(video, fps=30) as vr:
            rng = np.random.default_rng(0)
            for _ in range(args.frames):
                frame = demo.read()[1]
                if args.hard:
                    small = cv2.GaussianBlur(cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA), (3, 3), 0)
                    noisy = small.astype(np.float32) + rng.normal(0, 22, small.shape)
                    frame = cv2.resize(np.clip(noisy, 0, 255).astype(np.uint8), (640, 480))
                vr.write(frame)
        for name, src in (("demo (live source, headless)", DemoSource(fps=30, data_dir=args.data_dir, seed=1)),
                          ("640x480 video file, headless", VideoFileSource(video))):
            t = time.perf_counter()
            s = run_app(src, pipe, AppConfig(display=False, max_frames=args.frames), warn=lambda m: None)
            dt = time.perf_counter() - t
            print(f"{name:32s} {s.frames} frames in {dt:.1f} s = {s.frames / dt:.1f} FPS")
        src = VideoFileSource(video)
        results = []
        while (r := src.read())[0]:
            results.append(pipe.process(r[1]))
    for label, cfg in (("raw per-frame labels", TrackerConfig(alpha=1.0, switch_margin=0.0)),
                       ("tracked and smoothed", TrackerConfig())):
        seqs = track_labels(results, cfg)
        changes = sum(int(np.count_nonzero(np.diff(s))) for s in seqs)
        print(f"flicker, {label:22s} {100 * flicker_rate(seqs):.2f} % of frame pairs "
              f"({changes} label changes over {len(seqs)} tracked digits, {len(results)} frames)")


if __name__ == "__main__":
    main()
