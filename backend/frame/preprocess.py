"""Digit candidates of a frame -> the (N, 1, 28, 28) MNIST-format batch the model expects.

Each crop is cut from the full-resolution frame (not the working copy detection ran on), its
paper divided out by the background detection estimated, its ink level stretched so the stroke
core is white like MNIST's, its neighbours' ink masked away, its stroke width brought to
MNIST's, and then fitted and centred by backend.frame.mnist, the geometry training shares.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from backend.frame.detect import Candidates, stroke_width
from backend.frame.lines import percentile
from backend.frame.mnist import FIT_SIZE, MNIST_STROKE, fit_and_centre, normalize


@dataclass
class PreprocessConfig:
    stroke_norm: bool = True  # bring stroke width to MNIST's (ballpoint and marker look alike)
    canvas: int = 3  # stroke width is measured and changed at this multiple of the 20 px fit
    ink_lo: float = 0.3  # ink below this fraction of the digit's own ink level is background...
    ink_hi: float = 0.7  # ...and above this fraction it is full white, like MNIST's stroke cores
    small_ink_hi: float = 1.0  # the same for digits under FIT_SIZE px tall (see _ink_crop)


def _regions(c: Candidates, boxes: np.ndarray, pad: int) -> np.ndarray:
    """(N, 8) int64 per candidate box (N, 4) of the full frame: the box grown by `pad` pixels (a
    working pixel and one more) (x0, y0, x1, y1), inside the frame, and the same region in
    working pixels (bx0, by0, bx1, by1), at least a pixel. For all the crops at once: a page has
    hundreds, and each crop's Python arithmetic cost more than an OpenCV call."""
    (H, W), (bh, bw), s = c.gray.shape, c.background.shape, c.scale
    x, y, w, h = boxes.astype(np.int64).T
    x0, y0 = np.maximum(0, x - pad), np.maximum(0, y - pad)
    x1, y1 = np.minimum(W, x + w + pad), np.minimum(H, y + h + pad)
    bx0, by0 = np.minimum((x0 * s).astype(np.int64), bw - 1), np.minimum((y0 * s).astype(np.int64), bh - 1)
    bx1 = np.maximum(bx0 + 1, np.minimum(bw, np.ceil(x1 * s).astype(np.int64)))
    by1 = np.maximum(by0 + 1, np.minimum(bh, np.ceil(y1 * s).astype(np.int64)))
    return np.stack([x0, y0, x1, y1, bx0, by0, bx1, by1], 1)


def _ink_crop(c: Candidates, i: int, box: list[int], region: list[int], level: float, grow: np.ndarray,
              cfg: PreprocessConfig) -> np.ndarray:
    """Candidate i (its box and _regions row as Python ints, its ink level from ink_levels, the
    disk that grows its mask by a working pixel) as a tight (h, w) float32 ink image in [0, 1] at
    full resolution."""
    x, y, w, h = box
    x0, y0, x1, y1, bx0, by0, bx1, by1 = region
    # The background at working resolution, over the same region, brought to crop size.
    bg = cv2.resize(c.paper[by0:by1, bx0:bx1], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    # This digit's own pieces, at full resolution in the region, grown by a working pixel.
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.resize(c.masks[i], (w, h), dst=m[y - y0:y - y0 + h, x - x0:x - x0 + w], interpolation=cv2.INTER_NEAREST)
    m = cv2.dilate(m, grow)
    # A digit smaller than MNIST's 20-px box is written with strokes a pixel or two wide, which
    # the camera's blur spreads as wide again: cut at ink_hi of its darkness, each stroke came out
    # as wide as its blur and the small loops of 8s, 9s and 6s filled (read as 1s, 7s and 0s).
    # There only its own ink level is full white.
    lo, hi = cfg.ink_lo * level, (cfg.ink_hi if h >= FIT_SIZE else cfg.small_ink_hi) * level
    # Ink (1 - gray / background), stretched from [lo, hi] to [0, 1]: (1 - lo) / (hi - lo) - gray /
    # (background * (hi - lo)), in two calls.
    span = max(hi - lo, 1e-3)
    ink = cv2.divide(c.gray[y0:y1, x0:x1], bg, scale=-1.0 / span, dtype=cv2.CV_32F)
    ink += (1.0 - lo) / span
    np.maximum(ink, 0, out=ink)  # (np.clip costs several times more on a small crop)
    np.minimum(ink, 1, out=ink)
    return _tight(cv2.bitwise_and(ink, ink, mask=m))


@functools.lru_cache(maxsize=64)
def _disk(k: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def ink_levels(ink: np.ndarray, masks: list[np.ndarray], boxes_work: list[list[int]]) -> np.ndarray:
    """How dark each digit's ink is (0..1): the 90th percentile of the working-resolution ink
    image over the digit's own pixels (its mask over its working box), so faint pencil and black
    marker both become white. One histogram for all the digits: a partial sort, or a histogram,
    per digit costs several times more."""
    if not masks:
        return np.zeros(0)
    vals = [ink[y:y + h, x:x + w][m > 0] for (x, y, w, h), m in zip(boxes_work, masks)]
    n = np.array([len(v) for v in vals], np.int64)
    hist = np.bincount(np.repeat(np.arange(len(vals)) * 256, n) + np.concatenate(vals), minlength=len(vals) * 256)
    below = hist.reshape(-1, 256).cumsum(1) <= (0.9 * (n - 1)).astype(np.int64)[:, None]
    return np.where(n > 0, np.maximum(below.sum(1) / 255.0, 0.05), 1.0)


def _tight(img: np.ndarray, thresh: float = 0.1) -> np.ndarray:
    x, y, w, h = cv2.boundingRect(cv2.compare(img, thresh, cv2.CMP_GT))
    return img[y:y + h, x:x + w]


def normalise_stroke(digit: np.ndarray, cfg: PreprocessConfig | None = None) -> np.ndarray:
    """Tight (h, w) float32 ink in [0, 1] -> tight uint8 white-on-black digit whose stroke is as
    wide, relative to its 20 px fit, as MNIST's (measured the same way as MNIST_STROKE)."""
    cfg = cfg or PreprocessConfig()
    h, w = digit.shape
    if h == 0 or w == 0:
        return np.zeros((0, 0), np.uint8)
    side = FIT_SIZE * cfg.canvas
    f = side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    img = cv2.resize(digit, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    # Shrinking a large digit drawn with a thin pen leaves a faint hairline: stretch it back so
    # that the stroke core is full white, as in MNIST, before measuring its width. The 90th
    # percentile of the inked pixels is 1 (nothing to do) when a tenth of them are full white:
    # two counts tell that, most crops of a page need no sort. An enlarged digit keeps its ink
    # levels (a small digit's are its own: the sort cost a 640x480 page of 200 5 ms for nothing).
    n_on = cv2.countNonZero(cv2.compare(img, 0.05, cv2.CMP_GT)) if f < 1 else 0
    if n_on and n_on - cv2.countNonZero(cv2.compare(img, 1.0, cv2.CMP_GE)) > int(0.9 * (n_on - 1)):
        img *= 1.0 / max(percentile(img[img > 0.05], 90), 0.2)
        np.minimum(img, 1, out=img)  # (resampled ink is never below 0)
    if cfg.stroke_norm:
        target = MNIST_STROKE * cfg.canvas
        sw = stroke_width(cv2.threshold(img, 0.5, 1, cv2.THRESH_BINARY)[1])
        d = target - sw
        if d >= 1.0:
            k = int(round(d)) + 1
            img = cv2.copyMakeBorder(img, k, k, k, k, cv2.BORDER_CONSTANT, value=0)
            img = cv2.dilate(img, _disk(k))
        elif d <= -1.0:
            # Thin a bold marker stroke, but never below most of MNIST's width (keep it whole),
            # nor by more than a fifth of the canvas: a stroke that wide is a blot, or a crop of a
            # few pixels blown up, and eroding it with a disk that wide took 5 ms a crop.
            k = int(round(min(-d, sw - 0.7 * target, 0.2 * side))) + 1
            if k >= 2:
                img = cv2.erode(img, _disk(k))
    return (_tight(img) * 255).astype(np.uint8)


def candidates_to_mnist(c: Candidates, cfg: PreprocessConfig | None = None, start: int = 0,
                        stop: int | None = None) -> np.ndarray:
    """Detection candidates (those from `start` to `stop`) -> (N, 28, 28) uint8 white-on-black
    MNIST-format digits."""
    cfg = cfg or PreprocessConfig()
    stop = len(c.boxes) if stop is None else min(stop, len(c.boxes))
    levels = ink_levels(c.ink, c.masks[start:stop], c.boxes_work[start:stop].tolist()).tolist()
    pad = math.ceil(1.0 / c.scale) + 1  # a working pixel at full resolution, and one more
    grow = _disk(2 * pad - 1)  # a mask grown by a working pixel
    boxes = c.boxes[start:stop]
    regions = _regions(c, boxes, pad).tolist()
    return fit_and_centre([normalise_stroke(_ink_crop(c, start + k, box, region, level, grow, cfg), cfg)
                           for k, (box, region, level) in enumerate(zip(boxes.tolist(), regions, levels))])


def to_batch(digits28: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 normalised as in training."""
    return normalize(digits28)
