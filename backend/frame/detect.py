"""Find the handwritten digits in a camera frame.

    frame -> grey at a working resolution
          -> ink polarity decided (dark ink on paper, or chalk on a board)
          -> background (paper and light) estimated at low resolution and divided out
          -> hysteresis threshold relative to the paper's noise and the frame's strongest ink
          -> ruled lines, margins and folds taken out (digits crossing them kept)
          -> connected pieces -> pieces of one digit grouped -> touching digits split
          -> shape tests against non-digits (paper edges, blobs, lines, specks, table grain)

Every step is a whole-image OpenCV or numpy operation; Python loops run over candidates only.
All sizes are relative to the frame or to the digits found, so a 20-pixel digit and one that
fills half the frame, a ballpoint and a marker, go through the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class DetectConfig:
    max_digits: int = 40  # at most this many candidates per frame (the largest are kept)
    work_size: int = 640  # frames are analysed at this longest side; crops come from full size
    min_height_frac: float = 0.02  # a digit is at least this fraction of the frame's longest side
    min_height_px: int = 10  # ... and at least this many working pixels tall
    max_height_frac: float = 0.95  # and at most this fraction of the frame height
    bg_size: int = 160  # longest side of the low-resolution image the background is estimated on
    bg_kernel_frac: float = 1 / 10  # background closing kernel, as a fraction of that side:
    # wider than the thickest marker stroke of the largest digit we expect
    min_contrast: float = 0.08  # ink darker than the paper by less than this fraction is not ink
    noise_k: float = 5.0  # ... nor is ink within this many noise sigmas of the paper
    strong_frac: float = 0.3  # a piece must reach this fraction of the frame's ink contrast somewhere
    max_aspect: float = 1.3  # a wider candidate (width / height) is split or rejected
    max_stroke_frac: float = 0.32  # stroke width / height above this is a blob, not a digit
    min_rel_height: float = 0.2  # candidates shorter than this times the median height are specks
    split: bool = True  # separate touching neighbours at a thin waist
    line_frac_w: float = 0.4  # horizontal lines longer than this fraction of the width are not ink
    line_frac_h: float = 0.6  # nor are vertical lines longer than this fraction of the height
    max_width_frac: float = 0.7  # a digit is at most this fraction of the frame width
    local_snr: float = 2.5  # a digit's ink is darker than its surroundings by this many of their sigmas
    polarity_every: int = 30  # in a video, the ink polarity is decided afresh after this many frames...
    polarity_change: float = 10.0  # ...or once the picture differs by this many grey levels (mean) from
    # the one it was decided on; a sheet does not turn into a chalkboard without the picture changing


@dataclass
class Polarity:
    """Which way a scene's writing goes, kept for the next frames of a video."""

    light_on_dark: bool  # chalk on a board
    thumb: np.ndarray  # (h, w) uint8 the working grey frame shrunk to about 40 px, when it was decided
    age: int = 0  # frames since it was decided


@dataclass
class Candidates:
    """What detection found, with what preprocessing needs to crop it from the full frame."""

    boxes: np.ndarray  # (N, 4) int32 x, y, w, h in pixels of the original frame
    masks: list[np.ndarray]  # N uint8 masks (255 = this digit's ink) over boxes_work, working pixels
    boxes_work: np.ndarray  # (N, 4) int32 x, y, w, h in working pixels
    scale: float  # working pixels per frame pixel (<= 1)
    gray: np.ndarray  # (H, W) uint8 frame in grey, ink dark (inverted for light-on-dark scenes)
    background: np.ndarray  # (h, w) uint8 paper brightness at working resolution, same polarity
    ink: np.ndarray  # (h, w) uint8 working image: 0 paper .. 255 black ink (relative darkness)
    mask: np.ndarray  # (h, w) uint8 threshold mask at working resolution (debug view)
    light_on_dark: bool  # chalk-on-board polarity was chosen
    polarity: Polarity | None = None  # the polarity decision, to pass to the video's next frame


def to_gray(frame: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grey (H, W[, 1|3|4]) uint8 -> grey (H, W) uint8."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[..., 0]
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def _odd(k: float) -> int:
    return max(3, int(k) | 1)


def is_light_on_dark(work: np.ndarray, cfg: DetectConfig) -> bool:
    """True when the marks are lighter than their surroundings (chalk, a dark board).

    Against a polarity-neutral background (a median, taken at low resolution where it is cheap
    and where strokes are thin), writing is a sparse set of strong outliers on one side; paper
    texture and sensor noise fall on both sides alike.
    """
    small = _shrink(work, 320)
    sh, sw = small.shape
    g = min(1.0, 80 / max(sh, sw))
    tiny = cv2.resize(small, (max(1, round(sw * g)), max(1, round(sh * g))), interpolation=cv2.INTER_AREA)
    k = _odd(max(tiny.shape) * cfg.bg_kernel_frac * 1.5)
    med = cv2.medianBlur(tiny, k)
    # Near the edge of the sheet or of a shadow the median lies between the two sides and
    # both look like outliers: leave those places out.
    ker = np.ones((k, k), np.uint8)
    flat = (cv2.dilate(med, ker) - cv2.erode(med, ker)) < 255 * cfg.min_contrast
    med = cv2.resize(med, (sw, sh), interpolation=cv2.INTER_LINEAR)
    flat = cv2.resize(flat.view(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
    hist = cv2.calcHist([cv2.absdiff(small, med)], [0], flat, [256], [0, 256]).ravel()
    if hist.sum() == 0:
        return False
    sigma = 1.4826 * _hist_quantile(hist, 0.5) + 1.0
    t = max(5.0 * sigma, 255 * cfg.min_contrast)
    dark = _count_above(cv2.subtract(med, small), t, flat)
    light = _count_above(cv2.subtract(small, med), t, flat)
    return light > 1.5 * dark + 0.0005 * small.size


def decide_polarity(work: np.ndarray, cfg: DetectConfig, prev: Polarity | None = None) -> Polarity:
    """The polarity of the working grey frame (see is_light_on_dark), or prev's while the picture
    is nearly the one prev was decided on and prev is young: the test is one of detection's
    dearest steps, and a video asks it the same question frame after frame."""
    thumb = _shrink(work, 40)
    if (prev is not None and prev.age < cfg.polarity_every and prev.thumb.shape == thumb.shape
            and cv2.norm(thumb, prev.thumb, cv2.NORM_L1) <= cfg.polarity_change * thumb.size):
        return Polarity(prev.light_on_dark, prev.thumb, prev.age + 1)
    return Polarity(is_light_on_dark(work, cfg), thumb)


def _count_above(img: np.ndarray, t: float, mask: np.ndarray) -> int:
    """How many pixels of a uint8 image are above t (> t) where the uint8 mask is non-zero."""
    return cv2.countNonZero(cv2.bitwise_and(cv2.threshold(img, t, 1, cv2.THRESH_BINARY)[1], mask))


def _shrink(img: np.ndarray, size: int) -> np.ndarray:
    """img reduced by the smallest whole factor that brings its longest side to at most `size`
    (an area average; a last row or column that the factor does not divide is left out).
    OpenCV averages whole blocks many times faster than it resamples at a fractional scale."""
    h, w = img.shape[:2]
    k = min(-(-max(h, w) // size), h, w)
    if k <= 1:
        return img
    return cv2.resize(img[:h - h % k, :w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)


def _hist_quantile(hist: np.ndarray, q: float) -> float:
    """The q-quantile of integer values 0..len(hist)-1 from their histogram."""
    c = np.cumsum(hist)
    return float(np.searchsorted(c, q * c[-1]))


def estimate_background(work: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """Paper brightness under the ink, (h, w) uint8, for dark ink: a grey closing at low
    resolution (wider than any stroke, so the ink vanishes while straight paper edges and
    shadow edges stay where they are), smoothed and brought back to working size."""
    h, w = work.shape
    small = _shrink(work, cfg.bg_size)
    k = _odd(max(small.shape) * cfg.bg_kernel_frac)
    # Whatever meets the frame's edge (the table beside the sheet) is taken to go on beyond it,
    # so a strip of table narrower than the kernel is not filled in as paper.
    pad = cv2.copyMakeBorder(small, k, k, k, k, cv2.BORDER_REPLICATE)
    bg = _round_morph(_round_morph(pad, cv2.dilate, k // 2), cv2.erode, k // 2)[k:-k, k:-k]
    # Pull the bright side of every edge (sheet against table, light against shadow) in by a
    # couple of low-resolution pixels, so that resampling never puts bright paper behind the
    # dark side of the edge, which would read as a line of ink along it.
    bg = cv2.erode(bg, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE)
    bg = cv2.blur(bg, (3, 3))
    return cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)


def _round_morph(img: np.ndarray, op, r: int) -> np.ndarray:
    """cv2.dilate or cv2.erode by an octagon of radius r, nearly a disk: a square, then a
    diamond (r - r_square steps of a 3x3 cross). Several times faster than a disk kernel, whose
    every pixel OpenCV visits."""
    rs = round(0.25 * r)
    img = op(img, np.ones((2 * rs + 1, 2 * rs + 1), np.uint8))
    return op(img, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), iterations=r - rs)


def ink_image(gray: np.ndarray, background: np.ndarray, below: np.ndarray | None = None) -> np.ndarray:
    """Relative darkness (uint8): 255 * (background - gray) / background, 0 where brighter.

    Dividing by the background makes ink in a shadow as dark as ink in the light. Where the
    background is far darker than the paper (the table, a dark corner) the division would
    blow up noise, so it is capped at half the paper's brightness, and where the background is
    darker still there is no paper to write on and nothing counts as ink.
    """
    paper = _hist_quantile(np.bincount(background[::4, ::4].ravel(), minlength=256), 0.9)
    diff = cv2.subtract(background, gray) if below is None else below  # grey levels under the paper
    div = cv2.max(background, int(min(255, 0.5 * paper)))
    # Zero where background < 0.35 * paper: OpenCV's division by zero gives zero.
    paper_there = cv2.threshold(background, np.ceil(0.35 * paper) - 1, 255, cv2.THRESH_BINARY)[1]
    return cv2.divide(diff, cv2.bitwise_and(div, paper_there), scale=255)


def paper_noise(work: np.ndarray, background: np.ndarray) -> tuple[float, float]:
    """(offset, sigma) of the paper around its background estimate, in grey levels.

    The brighter half of (image - background) is paper only (ink is darker, never brighter),
    so its spread is the noise the camera and the paper's texture actually produce here,
    after the JPEG and the blur, which a high-pass noise estimate would miss.
    """
    # image - background + 128, saturated: only the middle of this histogram is used.
    e = cv2.addWeighted(work[::2, ::2], 1, background[::2, ::2], -1, 128)
    hist = cv2.calcHist([e], [0], None, [256], [0, 256]).ravel()
    m = _hist_quantile(hist, 0.5) - 128
    q = _hist_quantile(hist, 0.75) - 128
    return m, max((q - m) / 0.674, 1.0)


def thresholds(ink: np.ndarray, cfg: DetectConfig) -> tuple[float, float]:
    """(low, high) hysteresis levels on the ink image.

    low: above the paper's own texture (robust spread of the mostly-paper image) and a minimum
    contrast. high: a fraction of the strongest ink in the frame, so a faint smudge next to
    real writing is not ink, while a frame written in faint pencil still is.
    """
    # Every other row and column: the same levels, and a histogram of an image that is mostly
    # zeros is slow to count (each pixel waits for the one before it).
    hist = cv2.calcHist([ink[::2, ::2]], [0], None, [256], [0, 256]).ravel()
    med = _hist_quantile(hist, 0.5)
    dist = np.abs(np.arange(256) - med)  # median absolute deviation, from the same histogram
    order = np.argsort(dist, kind="stable")
    mad = float(dist[order][np.searchsorted(np.cumsum(hist[order]), 0.5 * hist.sum())])
    low = max(255 * cfg.min_contrast, med + cfg.noise_k * 1.4826 * mad + 2)
    ref = _hist_quantile(hist, 0.998)
    high = max(1.6 * low, cfg.strong_frac * ref)
    return low, high


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected pieces of a {0, 1} uint8 mask: (count, (h, w) labels, (count, 5) stats).

    16-bit labels make OpenCV's labelling several times faster; a frame of noise with more
    pieces than they can number falls back to 32 bits.
    """
    try:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_16U)
    except cv2.error:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    return n, labels, stats


def _union_find(n: int, pairs: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def group_pieces(stats: np.ndarray, ref_h: float) -> np.ndarray:
    """Group ids (n,) for pieces (n, 5 stats: x, y, w, h, area) that belong to one digit.

    A 5 whose top bar does not touch, a 4 drawn in two strokes, a broken ballpoint line: the
    pieces overlap a lot horizontally and sit one above the other with a small gap, or one
    piece's box lies mostly inside the other's.
    """
    n = len(stats)
    if n < 2:
        return np.zeros(n, np.int64)
    x, y, w, h = (stats[:, i].astype(np.float32) for i in range(4))
    x1, y1 = x + w, y + h
    ox = np.minimum(x1[:, None], x1[None]) - np.maximum(x[:, None], x[None])  # x overlap (n, n)
    oy = np.minimum(y1[:, None], y1[None]) - np.maximum(y[:, None], y[None])
    minw = np.minimum(w[:, None], w[None])
    maxh = np.maximum(h[:, None], h[None])
    inter = np.clip(ox, 0, None) * np.clip(oy, 0, None)
    mina = np.minimum((w * h)[:, None], (w * h)[None])
    union_h = np.maximum(y1[:, None], y1[None]) - np.minimum(y[:, None], y[None])
    union_w = np.maximum(x1[:, None], x1[None]) - np.minimum(x[:, None], x[None])
    gap = np.maximum(-oy, 0)
    stacked = (ox >= 0.5 * minw) & (gap <= 0.25 * maxh) & (union_h <= 1.7 * np.maximum(maxh, ref_h))
    inside = inter >= 0.6 * mina
    # A short piece right beside a taller one (the bar of a 7 or a 5 drawn apart), as long as
    # together they are no wider than a digit: two neighbouring digits are.
    minh = np.minimum(h[:, None], h[None])
    near = (np.maximum(-ox, 0) <= 0.2 * ref_h) & (gap <= 0.2 * ref_h)
    beside = near & (minh < 0.6 * maxh) & (minh < 0.6 * ref_h) & (union_w <= union_h) & (union_h <= 1.3 * maxh)
    # Never grow a digit out of a piece far bigger than the frame's digits (a paper edge, a
    # shadow's border): its box may hold digits without them being its pieces.
    merge = (stacked | inside | beside) & (union_w <= 1.2 * np.maximum(union_h, 0.6 * ref_h))
    merge &= (union_h <= 2.0 * ref_h) & (union_w <= 2.0 * ref_h)
    np.fill_diagonal(merge, False)
    pairs = np.argwhere(np.triu(merge))
    return _union_find(n, pairs)


def split_touching(m: np.ndarray, stroke: float, max_aspect: float, depth: int = 0) -> list[np.ndarray]:
    """Masks (each like m, a bool (h, w) mask of one candidate) that hold one digit each.

    While the ink is wider than a digit, cut it at its thinnest vertical waist (in the middle
    half, and no thicker than a stroke and a half: touching digits, not one wide digit's body),
    if both sides are nearly as tall as the whole.
    The cut column is taken out and every piece left is given to the side its centre lies on,
    so a 3 whose arcs reach back over a neighbouring 0 keeps its arcs.
    """
    cols = np.flatnonzero(m.any(0))
    rows = np.flatnonzero(m.any(1))
    if len(cols) == 0:
        return []
    w = cols[-1] - cols[0] + 1
    th = rows[-1] - rows[0] + 1
    if w <= max_aspect * th or depth > 3 or w < 6:
        return [m]
    proj = np.count_nonzero(m, axis=0).astype(np.float32)
    lo, hi = cols[0] + int(0.25 * w), cols[0] + int(0.75 * w)
    c = lo + int(np.argmin(proj[lo:hi]))
    if proj[c] > 1.5 * stroke + 1:
        return [m]
    cut = m.copy()
    cut[:, max(0, c - 1):c + 2] = False
    n, lab, st, cen = cv2.connectedComponentsWithStats(cut.astype(np.uint8), connectivity=8)
    on_right = cen[:, 0] > c
    on_right[0] = False  # the background
    right = on_right[lab]
    left = cut & ~right
    # The waist itself goes to both sides' neighbours: give it back to whichever side touches it.
    waist = m & ~cut
    left |= waist & (np.arange(m.shape[1]) < c)[None]
    right |= waist & (np.arange(m.shape[1]) >= c)[None]
    if not left.any() or not right.any():
        return [m]
    # Two digits side by side are each about as tall as the pair; a part much shorter is a
    # long bar or tail of one wide digit, which stays whole.
    for part in (left, right):
        r = np.flatnonzero(part.any(1))
        if r[-1] - r[0] + 1 < 0.6 * th:
            return [m]
    return (split_touching(left, stroke, max_aspect, depth + 1)
            + split_touching(right, stroke, max_aspect, depth + 1))


def fit_line(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) of v = a * u + b: np.polyfit(u, v, 1) in closed form, without its
    SVD, which costs more than the rest of the line search."""
    u, v = u.astype(np.float64), v.astype(np.float64)
    du = u - u.mean()
    a = float(du @ (v - v.mean())) / max(float(du @ du), 1e-12)
    return a, float(v.mean()) - a * float(u.mean())


def line_mask(mask: np.ndarray, stats: np.ndarray, cfg: DetectConfig) -> np.ndarray | None:
    """The straight horizontal and vertical lines of a {0, 1} mask, far longer than any digit's
    stroke (ruled paper, a margin, a fold, a ruler), grown by a pixel; None if there are none.
    Only pieces at least that long are looked at, so frames without lines cost nothing."""
    h, w = mask.shape
    # Longer than a fraction of the frame, and far longer than the typical piece of ink, so a
    # strip of one line of digits, or a close-up of a single tall 1, keeps its strokes.
    st = stats[1:]
    sized = st[(st[:, 3] >= cfg.min_height_px) & (st[:, 4] >= 10), 3]
    typical = float(np.median(sized)) if len(sized) else 0.0
    lh = max(3, int(cfg.line_frac_w * w), int(2.5 * typical))
    lv = max(3, int(cfg.line_frac_h * h), int(2.5 * typical))
    long_h = stats[1:, 2] >= lh
    long_v = stats[1:, 3] >= lv
    if not (long_h.any() or long_v.any()):
        return None
    # A probabilistic Hough transform finds them at the slant of a tilted sheet too.
    # A thin rule in a shadow breaks into dashes: long gaps are bridged, and it needs only a
    # third of its length in ink.
    # It runs on the mask at half size, where it has a quarter of the pixels to vote with; the
    # mask is grown by a pixel first, so a thin or slanted rule stays whole and thick enough for
    # the transform to follow it. The lines are refitted at full size below.
    half = cv2.dilate(mask, np.ones((3, 3), np.uint8))[::2, ::2]
    segs = cv2.HoughLinesP(half, 1, np.pi / 180, threshold=int(0.15 * min(lh, lv)), minLineLength=min(lh, lv) // 2,
                           maxLineGap=max(2, int(0.025 * max(h, w))))
    if segs is None:
        return None
    flat, steep = np.zeros_like(mask), np.zeros_like(mask)
    for x0, y0, x1, y1 in np.minimum(2 * segs.reshape(-1, 4), [w - 1, h - 1, w - 1, h - 1]):
        horizontal = abs(x1 - x0) >= abs(y1 - y0)
        drawn = flat if horizontal else steep
        if drawn[y0, x0] and drawn[y1, x1]:  # another piece of a line already drawn (a thick rule gives several)
            continue
        if np.hypot(x1 - x0, y1 - y0) >= (lh if horizontal else lv):
            # Ruled lines run across the whole sheet: draw the line edge to edge, so the parts
            # the transform missed (faint in a shadow, broken by a digit) go too.
            # The segment's own slope is only roughly right (a digit on the line pulls it), so
            # the line is refitted to the ink along it before it is extended.
            # (Within the segment's box grown by the band's half-width, not over the whole mask.)
            bx0, by0 = max(0, min(x0, x1) - 3), max(0, min(y0, y1) - 3)
            bx1, by1 = max(x0, x1) + 4, max(y0, y1) + 4
            seg = np.zeros_like(mask[by0:by1, bx0:bx1])
            cv2.line(seg, (int(x0 - bx0), int(y0 - by0)), (int(x1 - bx0), int(y1 - by0)), 1, 5)
            ys, xs = np.nonzero(seg & mask[by0:by1, bx0:bx1])
            ys, xs = ys + by0, xs + bx0
            if len(xs) < 2:
                continue
            u, v = (xs, ys) if horizontal else (ys, xs)  # v = a * u + b along the line
            a, b = fit_line(u, v)
            for _ in range(2):  # drop the digit strokes the band caught, refit to the line alone
                near = np.abs(v - (a * u + b)) <= 1.5
                if near.sum() < 2:
                    break
                a, b = fit_line(u[near], v[near])
            # A drawn line is ink nearly all along; the tops of a row of digits, which the
            # transform can also line up, are ink only here and there.
            uu = np.arange(u.min(), u.max() + 1)
            vv = np.rint(a * uu + b).astype(int)
            lim = h if horizontal else w
            on = np.zeros(len(uu), bool)
            for dv in (-1, 0, 1):
                vk = np.clip(vv + dv, 0, lim - 1)
                on |= (mask[vk, uu] if horizontal else mask[uu, vk]) > 0
            if on.mean() < 0.7:
                continue
            if horizontal:
                p0, p1 = (0, b), (w - 1, a * (w - 1) + b)
            else:
                p0, p1 = (b, 0), (a * (h - 1) + b, h - 1)
            cv2.line(flat if horizontal else steep, (round(p0[0]), round(p0[1])), (round(p1[0]), round(p1[1])), 1, 5)
    if not (flat.any() or steep.any()):
        return None
    # Where a digit's stroke crosses the line the ink runs on across it: keep those pixels, so
    # the digit stays whole and only the bare line goes.
    k = 9
    across_flat = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, 1), np.uint8))
    across_steep = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((1, k), np.uint8))
    return (flat & mask & (1 - across_flat)) | (steep & mask & (1 - across_steep))


def find_candidates(frame: np.ndarray, cfg: DetectConfig = DetectConfig(),
                    polarity: Polarity | None = None) -> Candidates:
    """Frame (H, W), (H, W, 3) BGR or (H, W, 4) BGRA uint8 -> digit candidates.

    polarity: the previous frame's Candidates.polarity in a video (reused while the picture stays
    nearly the same); None decides it from this frame alone.
    """
    gray = to_gray(np.asarray(frame))
    if gray.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {gray.dtype}")
    H, W = gray.shape
    s = min(1.0, cfg.work_size / max(H, W))
    work = cv2.resize(gray, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA) if s < 1 \
        else gray
    polarity = decide_polarity(work, cfg, polarity)
    light = polarity.light_on_dark
    if light:
        gray, work = 255 - gray, 255 - work
    bg = estimate_background(work, cfg)
    below = cv2.subtract(bg, work)  # grey levels under the background
    ink = ink_image(work, bg, below)
    low, high = thresholds(ink, cfg)
    # Relative darkness divides by the background, so in a shadow sensor noise grows with it:
    # ink must also stand out from the noise in absolute grey levels.
    m, sigma = paper_noise(work, bg)
    mask = cv2.bitwise_and(cv2.threshold(ink, low, 1, cv2.THRESH_BINARY)[1],
                           cv2.threshold(below, -m + cfg.noise_k * sigma, 1, cv2.THRESH_BINARY)[1])
    h, w = work.shape

    n, labels, stats = components(mask)
    lines = line_mask(mask, stats, cfg)
    if lines is not None:  # ruled lines, a margin, a fold: take them out, digits on them stay
        mask = cv2.subtract(mask, lines)
        n, labels, stats = components(mask)
    hi = cv2.bitwise_and(cv2.threshold(ink, high, 1, cv2.THRESH_BINARY)[1],
                         cv2.threshold(below, -m + 1.6 * cfg.noise_k * sigma, 1, cv2.THRESH_BINARY)[1])
    strong = np.bincount(labels[hi.view(bool)], minlength=n) > 0
    edge = mask - cv2.erode(mask, np.ones((3, 3), np.uint8))
    area = stats[:, 4].astype(np.float32)
    perim = np.bincount(labels[edge.view(bool)], minlength=n).astype(np.float32)
    min_h = max(cfg.min_height_px, cfg.min_height_frac * max(h, w))
    keep = strong & (area >= 3) & ((stats[:, 3] >= 0.15 * min_h) | (stats[:, 2] >= 0.15 * min_h))
    keep[0] = False
    ids = np.flatnonzero(keep)
    if len(ids) > 400:  # a noise frame: keep the biggest pieces, bounded work
        ids = ids[np.argsort(-area[ids])[:400]]
    mask255 = mask * 255

    def found(full: np.ndarray, masks: list[np.ndarray], work_boxes: np.ndarray) -> Candidates:
        return Candidates(full, masks, work_boxes, s, gray, bg, ink, mask255, light, polarity)

    if len(ids) == 0:
        return found(np.zeros((0, 4), np.int32), [], np.zeros((0, 4), np.int32))
    st = stats[ids]
    big = st[:, 3] >= min_h
    ref_h = float(np.median(st[big, 3])) if big.any() else min_h
    groups = group_pieces(st, ref_h)

    # One record per group: box, area, boundary length.
    gids, groups = np.unique(groups, return_inverse=True)
    ng = len(gids)
    top_left = np.full((ng, 2), np.iinfo(np.int32).max, np.int32)
    bottom_right = np.zeros((ng, 2), np.int32)
    np.minimum.at(top_left, groups, st[:, :2])
    np.maximum.at(bottom_right, groups, st[:, :2] + st[:, 2:4])
    boxes = np.concatenate([top_left, bottom_right - top_left], 1)
    g_area = np.bincount(groups, area[ids], ng).astype(np.float32)
    g_perim = np.bincount(groups, perim[ids], ng).astype(np.float32)
    stroke = 2 * g_area / np.maximum(g_perim, 1)
    group_of = np.full(n, -1, np.int32)  # label -> group, -1 for pieces left out
    group_of[ids] = groups

    # Split wide groups at thin waists, then test every part's shape.
    out_boxes, out_masks, out_stroke = [], [], []
    for g, ((x, y, bw, bh), sw) in enumerate(zip(boxes, stroke)):
        if bh < min_h:  # nor is any part of it tall enough for a digit (see plausible)
            continue
        m = group_of[labels[y:y + bh, x:x + bw]] == g
        parts = split_touching(m, sw, cfg.max_aspect) if cfg.split and bw > cfg.max_aspect * bh else [m]
        for part in parts:
            rr = np.flatnonzero(part.any(1))
            cc = np.flatnonzero(part.any(0))
            if len(rr) == 0:
                continue
            part = part[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1]
            out_boxes.append((x + cc[0], y + rr[0], part.shape[1], part.shape[0]))
            out_masks.append(part.astype(np.uint8) * 255)
            out_stroke.append(sw)
    if not out_boxes:
        return found(np.zeros((0, 4), np.int32), [], np.zeros((0, 4), np.int32))
    bx = np.array(out_boxes, np.int32)
    sw = np.array(out_stroke, np.float32)
    keep = plausible(bx, out_masks, sw, (h, w), min_h, cfg)
    sel = np.flatnonzero(keep)
    keep[sel] = stands_out(bx[sel], [out_masks[i] for i in sel], work, bg, mask, cfg)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-(bx[idx, 3].astype(np.int64) * bx[idx, 2]), kind="stable")][: cfg.max_digits]
    idx = np.sort(idx)
    bx = bx[idx]
    full = np.round(bx / s).astype(np.int32)
    full[:, 2:] = np.maximum(full[:, 2:], 1)
    return found(full, [out_masks[i] for i in idx], bx)


def plausible(boxes: np.ndarray, masks: list[np.ndarray], stroke: np.ndarray, shape: tuple[int, int],
              min_h: float, cfg: DetectConfig) -> np.ndarray:
    """(N,) bool: which candidates have the shape of a handwritten digit.

    Rejected: too small or too tall; wider than a digit; solid blobs (a fingertip, a dark table
    corner); hair-thin long lines (a paper edge, a ruler); anything touching the frame's edge;
    specks much smaller than the frame's other digits.
    """
    h, w = shape
    x, y, bw, bh = (boxes[:, i].astype(np.float32) for i in range(4))
    area = np.array([np.count_nonzero(m) for m in masks], np.float32)
    fill = area / np.maximum(bw * bh, 1)
    ok = (bh >= min_h) & (bh <= cfg.max_height_frac * h) & (bw <= cfg.max_width_frac * w)
    ok &= bw <= 1.6 * cfg.max_aspect * bh  # a slanted or wide digit, not a line
    ok &= stroke <= cfg.max_stroke_frac * bh
    thin = bw <= 3 * stroke + 2  # a '1': a single stroke, its box is full of ink
    ok &= thin | (fill <= 0.85)
    ok &= bh <= 12 * np.maximum(bw, stroke)  # a hair-thin long line is not a '1'
    # Whatever touches the frame's edge is cut off by it: the table, the sheet's border, or a
    # digit only partly in view, which cannot be read reliably either.
    ok &= (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    if ok.sum() >= 3:
        ref = float(np.median(bh[ok]))
        ok &= bh >= cfg.min_rel_height * ref
    return ok


def stands_out(boxes: np.ndarray, masks: list[np.ndarray], work: np.ndarray, bg: np.ndarray,
               mask: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """(N,) bool: which candidates are far darker than the texture of the surface around them.

    The noise level used for thresholding is the paper's; a wood table, a carpet or a sliver
    of table at the sheet's edge is much rougher, and its darker grain can pass that threshold.
    Ink stands out from its own surroundings by many times their local spread.
    """
    h, w = work.shape
    ok = np.ones(len(boxes), bool)
    for i, ((x, y, bw, bh), m) in enumerate(zip(boxes, masks)):
        r = max(3, int(0.25 * bh))
        x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + bw + r), min(h, y + bh + r)
        # Away from any ink and its blurred edge, and relative to the background (so the slope
        # of a shadow is not counted as roughness).
        near = cv2.dilate(mask[y0:y1, x0:x1], np.ones((5, 5), np.uint8))
        away = cv2.threshold(near, 0, 1, cv2.THRESH_BINARY_INV)[1]
        if cv2.countNonZero(away) < 10:
            continue
        diff = cv2.subtract(bg[y0:y1, x0:x1], work[y0:y1, x0:x1], dtype=cv2.CV_16S)
        spread = float(cv2.meanStdDev(diff, mask=away)[1][0, 0]) + 1.0
        contrast = float(cv2.mean(diff[y - y0:y - y0 + bh, x - x0:x - x0 + bw], mask=m)[0])
        ok[i] = contrast >= cfg.local_snr * spread
    return ok


def detect(frame: np.ndarray, cfg: DetectConfig = DetectConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Frame -> (boxes (N, 4) int32 x, y, w, h in frame pixels, threshold mask at work size)."""
    c = find_candidates(frame, cfg)
    return c.boxes, c.mask
