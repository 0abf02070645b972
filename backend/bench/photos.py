"""Reading accuracy on labelled photos, per source, and how well a confidence threshold chosen on
some sources carries over to the others.

  python -m backend.bench.photos ../shared/realworld/frames640 ../shared/realworld/labels.tsv \\
      [--checkpoint CKPT] [--score-tool ../shared/tools/score.py] [--dim CONTRAST NOISE]
      [--shadow DARKNESS SOFTNESS] [--closeup FILL]

Every photo goes through the pipeline once with no confidence threshold; each threshold is then
applied to the recorded confidences, and the readings are scored with the data set's own scoring
tool (edit distance in reading order, weighted by length). Printed:
  - digit accuracy per source (the labels' `source_repo` column) and in all, at the shipped
    threshold;
  - leave one source out: for each source, the threshold that scores best on all the others,
    and what it gives on the one left out, next to the shipped threshold's figure there.
With --dim, every photo is first made what a camera sees in dim light (see `dim`); with --shadow,
a shadow's edge crosses it (see `shadow`); with --closeup, only the photos of one digit are read,
each framed closer around its digit (see `framed`).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from backend.process import set_torch_threads, tune_process
from backend.errors import UserError
from backend.frame.pipeline import Pipeline, PipelineConfig
from backend.live.sources import read_image

THRESHOLDS = np.round(np.arange(0.0, 0.96, 0.05), 2)


def load_scorer(path: str):
    """The data set's score.py as a module (its reading_order and distance)."""
    spec = importlib.util.spec_from_file_location("score_tool", path)
    if spec is None or not Path(path).is_file():
        raise UserError(f"scoring tool not found: {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dim(img: np.ndarray, contrast: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A photo as a camera would see it in dim light: its ink's contrast with the paper (the
    paper taken as the brightest nearby) scaled by `contrast`, the picture at 60 % of its
    brightness, sensor noise of sigma `noise` grey levels, then JPEG at quality 75."""
    img = img.astype(np.float32)
    paper = cv2.GaussianBlur(cv2.dilate(img, np.ones((15, 15), np.uint8)), (0, 0), 10)
    img = 0.6 * (paper - contrast * (paper - img)) + rng.normal(0, noise, img.shape)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def shadow(img: np.ndarray, darkness: float, softness: float, rng: np.random.Generator) -> np.ndarray:
    """A photo with the edge of a shadow across it (a hand, the phone, a window frame): a straight
    edge at any angle through the middle of the picture, the light beyond it times
    1 - darkness, the edge blurred by a Gaussian of sigma `softness` pixels per 1280 of the
    picture's longer side."""
    h, w = img.shape[:2]
    angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(-0.2, 0.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    beyond = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5) > at).astype(np.float32)
    if softness > 0:
        beyond = cv2.GaussianBlur(beyond, (0, 0), softness * max(h, w) / 1280)
    light = 1 - darkness * beyond
    return np.clip(img * (light[..., None] if img.ndim == 3 else light), 0, 255).astype(np.uint8)


def framed(img: np.ndarray, box: np.ndarray, fill: float, aspect: float) -> np.ndarray:
    """A close-up of a photo of one digit: a frame of this aspect (width / height) centred on the
    digit's box, which fills `fill` of the frame's height (or of its width, where that is the
    tighter), the photo's border replicated where the frame runs past it (fill > 1 cuts the digit)."""
    x, y, w, h = box.tolist()
    fh = max(h / fill, w / fill / aspect)
    fw = aspect * fh
    x0, y0 = round(x + w / 2 - fw / 2), round(y + h / 2 - fh / 2)
    x1, y1 = x0 + round(fw), y0 + round(fh)
    p = max(0, -x0, -y0, x1 - img.shape[1], y1 - img.shape[0])
    return cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)[y0 + p:y1 + p, x0 + p:x1 + p]


def read_photos(folder: Path, files: list[str], pipeline: Pipeline,
                dimmed: tuple[float, float] | None = None,
                shaded: tuple[float, float] | None = None, closeup: float | None = None) -> dict[str, list[dict]]:
    """file -> every candidate the model saw: [{"box", "digit", "confidence"}], threshold 0.
    dimmed: (contrast, noise) to read each photo as `dim` makes it; shaded: (darkness, softness)
    to read it with a `shadow` across it; closeup: the fill to read each photo `framed` at, around
    the largest digit read in the whole photo, at 4:3, 3:4 or 1:1 (all seeded: the same every run)."""
    out = {}
    rng = np.random.default_rng(0)
    for f in files:
        pipeline.polarity = None  # photos are unrelated: decide each one's ink afresh
        img = read_image(folder / f)
        if shaded is not None:
            img = shadow(img, *shaded, rng)
        if closeup is not None:
            boxes = pipeline.process(img).detections.boxes
            if len(boxes):
                img = framed(img, boxes[np.argmax(boxes[:, 2] * boxes[:, 3])], closeup, rng.choice([4 / 3, 3 / 4, 1.0]))
            pipeline.polarity = None
        r = pipeline.process(img if dimmed is None else dim(img, *dimmed, rng))
        d = r.detections
        out[f] = [{"box": [int(v) for v in d.boxes[i]], "digit": int(d.digits[i]),
                   "confidence": float(d.confidence[i])} for i in range(len(d))]
    return out


def accuracy(rows: list[dict], read: dict[str, list[dict]], threshold: float, scorer) -> tuple[float, int]:
    """(digit accuracy, digits) of these label rows at this confidence threshold."""
    total = correct = 0.0
    for row in rows:
        exp = row["expected"].replace("/", "")
        got = scorer.reading_order([d for d in read[row["file"]] if d["confidence"] >= threshold]).replace("/", "")
        total += len(exp)
        correct += max(0.0, 1 - scorer.distance(got, exp) / len(exp)) * len(exp)
    return correct / max(total, 1), int(total)


def main(argv: list[str] | None = None) -> int:
    tune_process()
    p = argparse.ArgumentParser(prog="python -m backend.bench.photos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("labels", type=Path)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--score-tool", default=str(Path(__file__).resolve().parents[3] / "shared" / "tools" / "score.py"))
    p.add_argument("--dim", nargs=2, type=float, metavar=("CONTRAST", "NOISE"),
                   help="read the photos as in dim light: ink contrast times CONTRAST, sensor noise of sigma NOISE")
    p.add_argument("--shadow", nargs=2, type=float, metavar=("DARKNESS", "SOFTNESS"),
                   help="read the photos with a shadow's edge across each: the light beyond it times 1 - DARKNESS, "
                        "the edge blurred by SOFTNESS pixels (sigma) per 1280 of the photo's size")
    p.add_argument("--closeup", type=float, metavar="FILL",
                   help="read only the photos of one digit, each framed so that its digit fills FILL of the frame")
    args = p.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


def run(args: argparse.Namespace) -> int:
    from backend.model.recognizer import Recognizer

    set_torch_threads()
    scorer = load_scorer(args.score_tool)
    if not args.labels.is_file():
        raise UserError(f"labels not found: {args.labels}")
    with open(args.labels, newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if args.closeup is None or r["kind"] == "single"]
    by_source = defaultdict(list)
    for row in rows:
        by_source[row["source_repo"]].append(row)
    shipped = PipelineConfig().min_confidence
    read = read_photos(args.folder, [r["file"] for r in rows],
                       Pipeline(Recognizer(args.checkpoint), PipelineConfig(min_confidence=0.0)), args.dim, args.shadow,
                       args.closeup)

    print(f"{'source':55s} {'digits':>6s} {'accuracy':>9s}   leave-one-out: threshold  accuracy  (shipped {shipped})")
    for src, src_rows in sorted(by_source.items()):
        others = [r for r in rows if r["source_repo"] != src]
        best = max(THRESHOLDS, key=lambda t: (accuracy(others, read, t, scorer)[0], -abs(t - shipped)))
        acc, n = accuracy(src_rows, read, shipped, scorer)
        held = accuracy(src_rows, read, best, scorer)[0]
        print(f"{src[:55]:55s} {n:6d} {acc:9.2%}   {best:24.2f} {held:9.2%}")
    acc, n = accuracy(rows, read, shipped, scorer)
    print(f"{'all':55s} {n:6d} {acc:9.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
