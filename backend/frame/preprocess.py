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

from backend.frame.detect import Candidates
from backend.frame.lines import percentile
from backend.frame.mnist import FIT_SIZE, MNIST_STROKE, fit_and_centre, fit_into, normalize


@dataclass
class PreprocessConfig:
    stroke_norm: bool = True  # bring stroke width to MNIST's (ballpoint and marker look alike)
    canvas: int = 3  # stroke width is measured and changed at this multiple of the 20 px fit
    ink_lo: float = 0.3  # ink below this fraction of the digit's own ink level is background...
    ink_hi: float = 0.7  # ...and above this fraction it is full white, like MNIST's stroke cores
    small_ink_hi: float = 1.0  # the same for digits under FIT_SIZE px tall (see _ink_crops)


MOSAIC = 256  # crops prepared side by side at most, so that the images they share stay small


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


def _ink_crops(c: Candidates, start: int, boxes: np.ndarray, levels: np.ndarray, cfg: PreprocessConfig) -> list[np.ndarray]:
    """Candidates start.. (their boxes (n, 4), their ink levels from ink_levels) as tight (h, w)
    float32 ink images in [0, 1] at full resolution."""
    pad = math.ceil(1.0 / c.scale) + 1  # a working pixel at full resolution, and one more
    regions = _regions(c, boxes, pad)
    # A digit smaller than MNIST's 20-px box is written with strokes a pixel or two wide, which
    # the camera's blur spreads as wide again: cut at ink_hi of its darkness, each stroke came out
    # as wide as its blur and the small loops of 8s, 9s and 6s filled (read as 1s, 7s and 0s).
    # There only its own ink level is full white.
    lo = cfg.ink_lo * levels
    span = np.maximum(np.where(boxes[:, 3] >= FIT_SIZE, cfg.ink_hi, cfg.small_ink_hi) * levels - lo, 1e-3)
    crops: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * len(boxes)
    for group in _by_height(regions[:, 3] - regions[:, 1]):
        for k, crop in zip(group.tolist(), _side_by_side(c, start + group, boxes[group], regions[group], lo[group],
                                                         span[group], pad)):
            crops[k] = crop
    return crops


def _by_height(h: np.ndarray) -> list[np.ndarray]:
    """Indices of regions h tall in groups, tallest first, none in a group twice as tall as
    another: the image a group shares is as tall as its tallest region, and mostly regions
    (a page's digits beside one big one made it a hundred times larger)."""
    hs = h.tolist()
    order = np.argsort(-h, kind="stable").tolist()
    groups, top = [[order[0]]], hs[order[0]]
    for i in order[1:]:
        if 2 * hs[i] < top:
            groups.append([])
            top = hs[i]
        groups[-1].append(i)
    return [np.sort(g) for g in groups]  # each in the frame's order


def _side_by_side(c: Candidates, which: np.ndarray, boxes: np.ndarray, regions: np.ndarray, lo: np.ndarray,
                  span: np.ndarray, pad: int) -> list[np.ndarray]:
    """_ink_crops of the candidates `which` (their boxes, _regions and ink stretches): the regions
    worked on side by side in one image, `pad` pixels apart. Only bringing each one's background,
    mask and ink there, and cutting it out, are a call per digit."""
    rw, rh = regions[:, 2] - regions[:, 0], regions[:, 3] - regions[:, 1]
    left = np.concatenate([[0], np.cumsum(rw + pad)[:-1]])  # where each region starts
    shape = (int(rh.max()), int(left[-1] + rw[-1] + pad))
    bg, ink, m = np.zeros(shape, c.paper.dtype), np.zeros(shape, np.float32), np.zeros(shape, np.uint8)
    for i, (x, y, w, h), (x0, y0, x1, y1, bx0, by0, bx1, by1), l, sp, off in zip(
            which.tolist(), boxes.tolist(), regions.tolist(), left.tolist(), span.tolist(), ((1.0 - lo) / span).tolist()):
        here = (slice(0, y1 - y0), slice(l, l + x1 - x0))
        # The background at working resolution, over the same region, brought to its size.
        cv2.resize(c.paper[by0:by1, bx0:bx1], (x1 - x0, y1 - y0), dst=bg[here], interpolation=cv2.INTER_LINEAR)
        # This digit's own pieces, at full resolution.
        cv2.resize(c.masks[i], (w, h), dst=m[y - y0:y - y0 + h, l + x - x0:l + x - x0 + w], interpolation=cv2.INTER_NEAREST)
        # Ink (1 - gray / background), stretched from [lo, hi] to [0, 1]: (1 - lo) / (hi - lo) -
        # gray / (background * (hi - lo)), in two calls (the first term as addWeighted's constant:
        # cv2.add takes a region 4 px tall and 1 px wide for the 4 values of a scalar).
        cv2.divide(c.gray[y0:y1, x0:x1], bg[here], dst=ink[here], scale=-1.0 / sp, dtype=cv2.CV_32F)
        cv2.addWeighted(ink[here], 1.0, ink[here], 0.0, off, dst=ink[here])
    np.maximum(ink, 0, out=ink)  # (np.clip costs several times more)
    np.minimum(ink, 1, out=ink)
    # Each mask grown by a working pixel (the gaps are wider than that), over its ink.
    ink = cv2.bitwise_and(ink, ink, mask=cv2.dilate(m, _disk(2 * pad - 1)))
    # Each region cut to its ink above 0.1.
    on = cv2.compare(ink, 0.1, cv2.CMP_GT)
    return [_cut(ink, on, l, w) for l, w in zip(left.tolist(), rw.tolist())]


def _cut(img: np.ndarray, on: np.ndarray, left: int, width: int) -> np.ndarray:
    """The part of img, from column `left` and `width` wide, that holds the nonzero pixels of `on` there."""
    x, y, w, h = cv2.boundingRect(on[:, left:left + width])
    return img[y:y + h, left + x:left + x + w]


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


def _count(on: np.ndarray) -> np.ndarray:
    """(h, n, w) bool images side by side -> (n,) pixels set in each."""
    h, n, w = on.shape
    return cv2.reduce(on.view(np.uint8).reshape(h, -1), 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(n, w).sum(1)


def normalise_strokes(digits: list[np.ndarray], cfg: PreprocessConfig | None = None) -> list[np.ndarray]:
    """Tight (h, w) float32 ink images in [0, 1] -> tight uint8 white-on-black digits whose strokes
    are as wide, relative to their 20 px fit, as MNIST's (measured the same way as MNIST_STROKE).

    The digits are resized side by side into one image, a tile each with room to grow, whose
    stroke widths are measured and which is scaled to 8 bits at once; resizing a digit, thinning
    or thickening it, stretching a faint one and cutting it out are a call each: a page's
    hundreds of crops paid more for the calls than for the pixels. Each digit comes out as it
    would alone."""
    cfg = cfg or PreprocessConfig()
    n, side, target = len(digits), FIT_SIZE * cfg.canvas, MNIST_STROKE * cfg.canvas
    if n == 0:
        return []
    o = int(round(target)) + 1  # room around each digit for the widest thickening
    tiles = np.zeros((side + 2 * o, n, side + 2 * o), np.float32)  # digit k in tiles[:, k]
    outside = np.ones(tiles.shape, bool)  # of its digit, in each tile
    sizes = np.zeros((n, 2), np.int64)
    for k, d in enumerate(digits):  # (cv2.resize writes into the tile only when the types match)
        nh, nw = sizes[k] = fit_into(d.astype(np.float32, copy=False), side, tiles[o:, k, o:])
        outside[o:o + nh, k, o:o + nw] = False
    shrunk = np.array([max(d.shape) for d in digits]) > side
    # Shrinking a large digit drawn with a thin pen leaves a faint hairline: stretch it back so
    # that the stroke core is full white, as in MNIST, before measuring its width. The 90th
    # percentile of the inked pixels is 1 (nothing to do) when a tenth of them are full white:
    # two counts tell that, most crops of a page need no sort. An enlarged digit keeps its ink
    # levels (a small digit's are its own: the sort cost a 640x480 page of 200 5 ms for nothing).
    if shrunk.any():
        n_on, n_full = _count(tiles > 0.05), _count(tiles >= 1.0)
        for k in np.flatnonzero(shrunk & (n_on > 0) & (n_on - n_full > (0.9 * (n_on - 1)).astype(np.int64))).tolist():
            t = tiles[:, k]
            t *= 1.0 / max(percentile(t[t > 0.05], 90), 0.2)
            np.minimum(t, 1, out=t)  # (resampled ink is never below 0)
    if cfg.stroke_norm:
        # Stroke widths as backend.frame.detect.stroke_width measures a digit alone: 2 * area /
        # boundary of its ink above half, the boundary being what a 3x3 erosion takes away. Past
        # its digit a tile counts as ink, as past its edges an image does to an erosion.
        ink = tiles > 0.5
        area = _count(ink)
        eroded = cv2.erode((ink | outside).view(np.uint8).reshape(len(ink), -1), None).reshape(ink.shape)  # (3x3)
        boundary = area - _count(eroded.view(bool) > outside)  # eroded, and its digit's
        sw = np.where(area > 0, 2.0 * area / np.maximum(boundary, 1), 0.0)
        for k, (d, (nh, nw)) in enumerate(zip((target - sw).tolist(), sizes.tolist())):
            if d >= 1.0:  # a thin pen's strokes widened, into the room around the digit
                r = int(round(d)) + 1
                t = tiles[o - r:o + nh + r, k, o - r:o + nw + r]
                t[:] = cv2.dilate(t, _disk(r))
            elif d <= -1.0:
                # Thin a bold marker stroke, but never below most of MNIST's width (keep it whole),
                # nor by more than a fifth of the canvas: a stroke that wide is a blot, or a crop of a
                # few pixels blown up, and eroding it with a disk that wide took 5 ms a crop.
                r = int(round(min(-d, sw[k] - 0.7 * target, 0.2 * side))) + 1
                if r >= 2:
                    t = tiles[o:o + nh, k, o:o + nw]
                    t[:] = cv2.erode(t, _disk(r))
    # Each digit cut to its ink above 0.1.
    u8 = (tiles * 255).astype(np.uint8).reshape(len(tiles), -1)
    on = cv2.compare(tiles.reshape(len(tiles), -1), 0.1, cv2.CMP_GT)
    return [_cut(u8, on, k * tiles.shape[2], tiles.shape[2]) for k in range(n)]


def candidates_to_mnist(c: Candidates, cfg: PreprocessConfig | None = None, start: int = 0,
                        stop: int | None = None) -> np.ndarray:
    """Detection candidates (those from `start` to `stop`) -> (N, 28, 28) uint8 white-on-black
    MNIST-format digits."""
    cfg = cfg or PreprocessConfig()
    stop = len(c.boxes) if stop is None else min(stop, len(c.boxes))
    if stop <= start:
        return fit_and_centre([])
    if stop - start > MOSAIC:  # (hostile input: thousands of candidates)
        return np.concatenate([candidates_to_mnist(c, cfg, s, min(s + MOSAIC, stop)) for s in range(start, stop, MOSAIC)])
    levels = ink_levels(c.ink, c.masks[start:stop], c.boxes_work[start:stop].tolist())
    return fit_and_centre(normalise_strokes(_ink_crops(c, start, c.boxes[start:stop], levels, cfg), cfg))


def to_batch(digits28: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 normalised as in training."""
    return normalize(digits28)
