"""Whole pages of real handwriting, small: the photos' digits written again, hundreds to a frame.

  python -m backend.bench.real_pages [--realworld ../shared/realworld] [--pages 4]

The digits cut from the photos of `../shared/realworld` (`live_clips.cut_digits`: 361 digits of
13 writers) are written in lines across a sheet, 12-18 px tall in a 640x480 frame and 18-28 px in
a 1280x720 one, on plain and on ruled paper (each line just above its rule), then the camera's
blur and noise. The synthetic pages of `backend.bench.benchmark` are MNIST's hand; these are other people's, at the
sizes where a whole page in view puts them. Prints, per set, the digits found and read right
(`benchmark.score_frame`) and those accepted, of those placed. Asserts nothing.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from backend.bench.benchmark import score_frame
from backend.bench.live_clips import REALWORLD, Glyph, cut_digits
from backend.errors import UserError
from backend.process import tune_process

# (frame size, digit heights, ruled, blur sigma)
SETS = (((640, 480), (12, 18), False, 0.7), ((640, 480), (12, 18), True, 0.7), ((1280, 720), (18, 28), False, 1.0),
        ((1280, 720), (18, 28), True, 1.0), ((640, 480), (14, 22), False, 1.2))


def real_page(glyphs: list[Glyph], rng: np.random.Generator, size: tuple[int, int], heights: tuple[int, int],
              ruled: bool, blur: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sheet filled with lines of the glyphs: (BGR frame, boxes (N, 4) x, y, w, h, labels (N,))."""
    (W, H), (lo, hi) = size, heights
    paper = np.float32(rng.uniform(170, 235)) + rng.normal(0, 3, (H, W)).astype(np.float32)
    ink = np.float32(rng.uniform(20, 90))
    gap = int(rng.uniform(1.6, 2.2) * hi)
    if ruled:
        rule = float(paper.mean() - rng.uniform(25, 60))
        for y in range(gap, H, gap):
            cv2.line(paper, (0, y), (W - 1, y), rule, int(rng.integers(1, 3)), cv2.LINE_AA)
    boxes, labels = [], []
    y = int(0.06 * H)
    while y + hi < 0.94 * H:
        line_h, x = int(rng.uniform(lo, hi)), int(0.05 * W)
        while True:
            g = glyphs[int(rng.integers(len(glyphs)))]
            h = max(lo, int(line_h * rng.uniform(0.9, 1.1)))
            w = max(2, round(g.alpha.shape[1] * h / g.alpha.shape[0]))
            if x + w > 0.95 * W:
                break
            a = g.render(h, w, (1.2, 0.16 * h)) * np.float32(rng.uniform(0.75, 1.0))
            top = y + gap - h - 2 + int(rng.integers(-1, 2)) if ruled else y
            roi = paper[top:top + h, x:x + w]
            roi += a * (ink - roi)
            ys, xs = np.nonzero(a > 0.3)
            boxes.append((x + xs.min(), top + ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1))
            labels.append(g.label)
            x += w + int(h * rng.uniform(0.25, 0.6)) + (int(0.8 * h) if rng.random() < 0.25 else 0)
        y += gap if ruled else int(hi * rng.uniform(1.5, 1.9))
    img = cv2.GaussianBlur(paper, (0, 0), blur) + rng.normal(0, 2.5, (H, W)).astype(np.float32)
    frame = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return frame, np.array(boxes, np.int32).reshape(-1, 4), np.array(labels, np.int64)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realworld", default=str(REALWORLD))
    p.add_argument("--pages", type=int, default=4, help="pages per set")
    p.add_argument("--checkpoint", default=None, help="default: the shipped model")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    args = p.parse_args(argv)
    tune_process()
    from backend.frame.pipeline import Pipeline
    from backend.model.recognizer import Recognizer, RecognizerConfig

    try:
        glyphs = cut_digits(args.realworld)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    if not glyphs:
        raise SystemExit(f"error: no digits cut from {args.realworld} (its frames1280/ photos expected)")
    pipe = Pipeline(Recognizer(args.checkpoint, RecognizerConfig("cpu", args.backend, 1)))
    rng = np.random.default_rng(7)
    total = np.zeros(4, np.int64)
    print(f"{len(glyphs)} digits from {len({g.source for g in glyphs})} photos; found / read right / accepted of placed")
    for size, heights, ruled, blur in SETS:
        n = np.zeros(4, np.int64)
        for _ in range(args.pages):
            frame, boxes, labels = real_page(glyphs, rng, size, heights, ruled, blur)
            pipe.polarity = None  # each page is a new scene
            res = pipe.process(frame)
            n += (*score_frame(res, (boxes, labels)), len(res.detections), len(labels))
        total += n
        name = f"{size[0]}x{size[1]}, {heights[0]}-{heights[1]} px, {'ruled' if ruled else 'plain'}, blur {blur}"
        print(f"{name:40s} {n[0]:5d} / {n[1]:5d} / {n[2]:5d} of {n[3]:5d}")
    print(f"{'all':40s} {total[0]:5d} / {total[1]:5d} / {total[2]:5d} of {total[3]:5d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
