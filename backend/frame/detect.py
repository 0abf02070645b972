"""Find the handwritten digits in a camera frame.

    frame -> grey at a working resolution
          -> ink polarity decided (dark ink on paper, or chalk on a board)
          -> background (paper and light) estimated at low resolution and divided out
          -> hysteresis threshold relative to the paper's noise and the frame's strongest ink
          -> ruled lines, margins and folds taken out (digits crossing them kept)
          -> connected pieces -> pieces of one digit grouped (a printed box's outline left out)
             -> touching digits split
          -> shape tests against non-digits (paper edges, blobs, lines, specks, table grain,
             the sides of a form's boxes)

Every step is a whole-image OpenCV or numpy operation; Python loops run over candidates only.
All sizes are relative to the frame or to the digits found, so a 20-pixel digit and one that
fills half the frame, a ballpoint and a marker, go through the same code.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import cv2
import numpy as np

from backend.frame.lines import Lines, grid_pieces, line_lengths, line_mask, line_sized, long_pieces


@dataclass
class DetectConfig:
    max_digits: int = 2000  # a limit for hostile input (thousands of specks), far above any real
    # page (250 digits fit a 1280-px frame); beyond it the largest are kept and the rest counted
    max_pieces: int = 8000  # pieces of ink looked at per frame (a noise frame: the biggest)
    work_size: int = 640  # frames are analysed with as many pixels as a 640x480 one; crops come
    # from full size
    min_digit_px: float = 20.0  # a frame whose digits are smaller at the working resolution is read
    # again at a higher one (up to full size), where they are this tall
    min_work_side: int = 160  # smaller frames (a crop of one digit) are enlarged to this
    closeup_kernel_frac: float = 0.3  # the background kernel tried when a frame shows at most two
    # candidates: a close-up's strokes can be wider than bg_kernel_frac
    closeup_frac: float = 0.4  # a candidate this tall or wide (fraction of the frame) that dwarfs
    # every other is the picture itself: it may touch the frame's edges
    min_height_frac: float = 0.014  # a digit is at least this fraction of the frame's size (the
    # side of a square of the same area, so a long strip does not demand tall digits)
    min_height_px: int = 8  # ... and at least this many working pixels tall
    max_height_frac: float = 0.95  # and at most this fraction of the frame height
    bg_size: int = 160  # longest side of the low-resolution image the background is estimated on
    bg_kernel_frac: float = 1 / 10  # background closing kernel, as a fraction of that side:
    # wider than the thickest marker stroke of the largest digit we expect
    min_contrast: float = 0.08  # ink darker than the paper by less than this fraction is not ink
    noise_k: float = 5.0  # ... nor is ink within this many noise sigmas of the paper
    smooth_noise: float = 2.5  # a frame whose paper noise is this many grey levels (sigma) or more
    # is also thresholded smoothed, and read that way where that takes the noise down and finds more
    # digit-tall pieces of ink (see threshold_ink)...
    noisy: float = 4.0  # ... or, from this noise up, as many
    strong_frac: float = 0.3  # a piece must reach this fraction of the frame's ink contrast somewhere
    max_aspect: float = 1.3  # a wider candidate (width / height) is split or rejected
    max_stroke_frac: float = 0.32  # stroke width / height above this is a blob, not a digit...
    bold_stroke_frac: float = 0.4  # ... or this, for strokes under a fifth of the background kernel
    min_rel_height: float = 0.2  # candidates shorter than this times the median height are specks
    page_rel_height: float = 0.4  # ... and on a page (PAGE_PIECES candidates), this: one hand writes
    # a page's digits at one size, and the grain of a strip of table beside the sheet is thresholded
    # as ink, so that it stands out from the paper around it
    split: bool = True  # separate touching neighbours at a thin waist
    wide_frac: float = 1.7  # ... also when narrower than max_aspect but this many times the typical width
    maybe_two_frac: float = 1.1  # this many times the typical width, and parted by a thin waist: the
    # model reads it whole and in parts, and keeps what reads better (backend.frame.pipeline)
    line_frac_w: float = 0.4  # horizontal lines longer than this fraction of the width are not ink
    line_frac_h: float = 0.6  # nor are vertical lines longer than this fraction of the height
    max_width_frac: float = 0.7  # a digit is at most this fraction of the frame width
    local_snr: float = 2.5  # a digit's ink is darker than its surroundings by this many of their sigmas
    polarity_every: int = 30  # in a video, the ink polarity is decided afresh after this many frames...
    polarity_change: float = 10.0  # ...or once the picture differs by this many grey levels (mean) from
    # the one it was decided on; a sheet does not turn into a chalkboard without the picture changing


@dataclass
class Polarity:
    """Which way a scene's writing goes, and how closely its digits had to be looked at, kept for
    the next frames of a video."""

    light_on_dark: bool  # chalk on a board
    thumb: np.ndarray  # (h, w) uint8 the working grey frame shrunk to about 40 px, when it was decided
    age: int = 0  # frames since it was decided
    # The working scale of the second, closer look that small digits needed (a page in view), and
    # their median height there; a video of the page goes straight to it (None: one look was enough).
    scale: float | None = None
    digit_px: float = 0.0
    lines: Lines | None = None  # the ruled lines the last frame's look found, looked for there again
    smoothed: bool | None = None  # whether the last frame was thresholded smoothed (threshold_ink);
    # None: not yet decided for this scene


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
    dropped: int = 0  # candidates left out by DetectConfig.max_digits (hostile input only)

    def parts(self, splits: list[tuple[int, np.ndarray, list[np.ndarray]]]) -> "Candidates":
        """The parts of maybe_two's splits, in order, as candidates of the same frame."""
        boxes = np.concatenate([b for _, b, _ in splits]) if splits else np.zeros((0, 4), np.int32)
        return replace(self, boxes=_in_frame(boxes, self.scale, self.gray.shape), boxes_work=boxes,
                       masks=[m for _, _, ms in splits for m in ms])

    @functools.cached_property
    def paper(self) -> np.ndarray:
        """background, at least 1: what preprocessing divides the frame by (once a frame)."""
        return cv2.max(self.background, 1)


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
        return replace(prev, age=prev.age + 1)
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
    return cv2.resize(_background_small(work, cfg), (w, h), interpolation=cv2.INTER_LINEAR)


def _background_small(work: np.ndarray, cfg: DetectConfig) -> np.ndarray:
    """estimate_background at its low resolution (cfg.bg_size)."""
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
    return cv2.blur(bg, (3, 3))


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


# Background that changes by this many grey levels or more within 9 pixels of every other row and
# column is not steady (see paper_noise): a shadow's or the sheet's edge. (At 8, the noise of a
# rough table beside the sheet was measured on the paper alone, and its grain read as digits.)
STEADY_BG = 24


def paper_noise(work: np.ndarray, background: np.ndarray, paper: np.ndarray | None = None) -> tuple[float, float]:
    """(offset, sigma) of the paper around its background estimate, in grey levels.

    The brighter half of (image - background) is paper only (ink is darker, never brighter),
    so its spread is the noise the camera and the paper's texture actually produce here,
    after the JPEG and the blur, which a high-pass noise estimate would miss.
    paper: a uint8 mask of every other row and column where there is paper, for a picture
    that is more ink than paper (see paper_only); None counts every pixel.
    Where the background changes fast (the edge of a shadow, of the sheet), its estimate lags
    behind the light, and that error is no noise: it made the noise of a photo with a shadow's
    edge across it several times too high, and its faint digits were lost. Only stretches of
    steady background are measured, where there are enough of them (a quarter of the picture).
    """
    # image - background + 128, saturated: only the middle of this histogram is used.
    e = cv2.addWeighted(work[::2, ::2], 1, background[::2, ::2], -1, 128)
    steady = cv2.compare(cv2.morphologyEx(background[::2, ::2], cv2.MORPH_GRADIENT, np.ones((9, 9), np.uint8)),
                         STEADY_BG, cv2.CMP_LT)
    if paper is not None:
        steady = cv2.bitwise_and(steady, paper)
    if cv2.countNonZero(steady) >= 0.25 * steady.size:
        paper = steady
    hist = cv2.calcHist([e], [0], paper, [256], [0, 256]).ravel()
    m = _hist_quantile(hist, 0.5) - 128
    q = _hist_quantile(hist, 0.75) - 128
    return m, max((q - m) / 0.674, 1.0)


def paper_only(ink: np.ndarray, cfg: DetectConfig) -> np.ndarray | None:
    """None for a frame that is mostly paper (any real scene); for a picture that is largely ink
    (a tight crop of one bold digit), a uint8 mask of every other row and column
    that keeps the paper only (below Otsu's split of the ink image), so the paper's noise is
    measured on paper."""
    sub = ink[::2, ::2]
    t, above = cv2.threshold(sub, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # A quarter of the picture well darker than the paper: no page of digits is that dark,
    # and a frame of noise splits at a level below a minimum contrast.
    if t < 2 * 255 * cfg.min_contrast or cv2.countNonZero(above) < 0.25 * sub.size:
        return None
    return cv2.bitwise_not(above)


def thresholds(ink: np.ndarray, cfg: DetectConfig, paper: np.ndarray | None, strong: float) -> tuple[float, float]:
    """(low, high) hysteresis levels on the ink image.

    low: above the paper's own texture (robust spread of the mostly-paper image) and a minimum
    contrast. high: `strong` times that, and a fraction of the strongest ink in the frame, so a
    faint smudge next to real writing is not ink, while a frame written in faint pencil still is.
    """
    # Every other row and column: the same levels, and a histogram of an image that is mostly
    # zeros is slow to count (each pixel waits for the one before it).
    hist = cv2.calcHist([ink[::2, ::2]], [0], None, [256], [0, 256]).ravel()
    on_paper = hist if paper is None else cv2.calcHist([ink[::2, ::2]], [0], paper, [256], [0, 256]).ravel()
    med = _hist_quantile(on_paper, 0.5)
    dist = np.abs(np.arange(256) - med)  # median absolute deviation, from the same histogram
    order = np.argsort(dist, kind="stable")
    mad = float(dist[order][np.searchsorted(np.cumsum(on_paper[order]), 0.5 * on_paper.sum())])
    low = max(255 * cfg.min_contrast, med + cfg.noise_k * 1.4826 * mad + 2)
    ref = _hist_quantile(hist, 0.998)
    high = max(strong * low, cfg.strong_frac * ref)
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
    i, j = _near_pairs(stats[:, 0], stats[:, 1], 2.0 * ref_h)
    x, y, w, h = (stats[:, k].astype(np.float32) for k in range(4))
    x1, y1 = x + w, y + h
    ox = np.minimum(x1[i], x1[j]) - np.maximum(x[i], x[j])  # x overlap of each pair
    oy = np.minimum(y1[i], y1[j]) - np.maximum(y[i], y[j])
    minw = np.minimum(w[i], w[j])
    maxh = np.maximum(h[i], h[j])
    inter = np.clip(ox, 0, None) * np.clip(oy, 0, None)
    mina = np.minimum(w[i] * h[i], w[j] * h[j])
    union_h = np.maximum(y1[i], y1[j]) - np.minimum(y[i], y[j])
    union_w = np.maximum(x1[i], x1[j]) - np.minimum(x[i], x[j])
    gap = np.maximum(-oy, 0)
    stacked = (ox >= 0.5 * minw) & (gap <= 0.25 * maxh) & (union_h <= 1.7 * np.maximum(maxh, ref_h))
    inside = inter >= 0.6 * mina
    # A short piece right beside a taller one (the bar of a 7 or a 5 drawn apart), as long as
    # together they are no wider than a digit: two neighbouring digits are.
    minh = np.minimum(h[i], h[j])
    near = (np.maximum(-ox, 0) <= 0.2 * ref_h) & (gap <= 0.2 * ref_h)
    beside = near & (minh < 0.6 * maxh) & (minh < 0.6 * ref_h) & (union_w <= union_h) & (union_h <= 1.3 * maxh)
    # Never grow a digit out of a piece far bigger than the frame's digits (a paper edge, a
    # shadow's border): its box may hold digits without them being its pieces.
    merge = (stacked | inside | beside) & (union_w <= 1.2 * np.maximum(union_h, 0.6 * ref_h))
    merge &= (union_h <= 2.0 * ref_h) & (union_w <= 2.0 * ref_h)
    return _union_find(n, np.stack([i[merge], j[merge]], 1))


def _near_pairs(x: np.ndarray, y: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i != j once each, of points whose x and y differ by at most `reach`:
    the only pieces that can be parts of one digit, found by a sweep along x, so a page of
    thousands of pieces never builds an (n, n) table."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ends = np.searchsorted(xs, xs + reach, side="right")
    counts = ends - np.arange(len(xs)) - 1
    a = np.repeat(np.arange(len(xs)), counts)
    b = a + 1 + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    i, j = order[a], order[b]
    keep = np.abs(y[i].astype(np.int64) - y[j]) <= reach
    return i[keep], j[keep]


_SQUARE3 = np.ones((3, 3), np.uint8)


def stroke_width(binary: np.ndarray) -> float:
    """Mean stroke width in pixels of a binary (h, w) image, ink nonzero (uint8 or float32):
    2 * area / boundary."""
    area = cv2.countNonZero(binary)
    if area == 0:
        return 0.0
    boundary = area - cv2.countNonZero(cv2.erode(binary, _SQUARE3))
    return 2.0 * area / max(boundary, 1)


def split_touching(m: np.ndarray, stroke: float, max_w: float, depth: int = 0) -> list[np.ndarray]:
    """Masks (each like m, a bool (h, w) mask of one candidate) that hold one digit each.

    While the ink is wider than max_w, cut it at its thinnest vertical waist (in the middle
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
    if w <= max_w or depth > 3 or w < 6:
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
    return (split_touching(left, stroke, max_w, depth + 1)
            + split_touching(right, stroke, max_w, depth + 1))


def work_scale(shape: tuple[int, int], cfg: DetectConfig) -> float:
    """Working pixels per frame pixel for a frame of shape (H, W).

    The working image holds about as many pixels as a work_size x 3/4 work_size frame, whatever
    the aspect ratio, so a long strip of digits keeps them as tall as a photo does; frames much
    smaller than that are enlarged until their longer side is min_work_side, so a crop of one
    digit has room for the background estimate and the shape tests.
    """
    H, W = shape
    s = min(1.0, cfg.work_size * np.sqrt(0.75 / max(H * W, 1)))
    return max(s, min(cfg.min_work_side / max(H, W), 8.0))


def _resize(img: np.ndarray, s: float) -> np.ndarray:
    """img scaled by s. Shrinking averages over the pixels each working pixel covers: by a
    whole factor first (OpenCV's fast block average), the rest as a blur as wide as the box
    it stands for, sampled bilinearly: a third of the cost of OpenCV's area resampling at a
    fractional scale (1.1 against 2.8 ms for a 1280x720 frame), a thin stroke's contrast as even."""
    if s == 1.0:
        return img
    H, W = img.shape
    size = (max(1, round(W * s)), max(1, round(H * s)))
    if s > 1:
        return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    k = min(int(1 / s), H, W)
    if k >= 2:
        img = cv2.resize(img[:H - H % k, :W - W % k], (W // k, H // k), interpolation=cv2.INTER_AREA)
    r = img.shape[1] / size[0]  # the factor left, 1 to 2
    if r > 1.05:
        img = cv2.GaussianBlur(img, (3, 3), r / np.sqrt(12))  # a box of width r has this sigma
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


@dataclass
class InkMasks:
    """The thresholded ink of a working grey frame (dark ink), all (h, w) at working resolution."""

    background: np.ndarray  # uint8 paper brightness under the ink
    below: np.ndarray  # uint8 grey levels under the background (ink is darker than the paper)
    ink: np.ndarray  # uint8 relative darkness, 0 paper .. 255 black
    mask: np.ndarray  # uint8 {0, 1} ink, ruled lines taken out
    strong: np.ndarray  # uint8 {0, 1} ink well above the noise (each digit reaches it somewhere)
    lines: np.ndarray | None  # uint8 {0, 1} the ruled lines taken out, or None
    pieces: tuple[int, np.ndarray, np.ndarray]  # components(mask), labelled once
    found_lines: Lines | None = None  # those lines, for the next frame of a video
    smoothed: bool = False  # thresholded after smoothing (a noisy frame, see threshold_ink)

    @functools.cached_property
    def reach_strong(self) -> np.ndarray:
        """(count,) bool per label of pieces: which pieces reach strong ink somewhere (asked when
        choosing whether to read a noisy frame smoothed, and again when its pieces are kept)."""
        n, labels, _ = self.pieces
        return np.bincount(labels[self.strong.view(bool)], minlength=n) > 0


def threshold_ink(work: np.ndarray, cfg: DetectConfig, smooth: bool | None = None) -> InkMasks:
    """Working grey frame (dark ink) -> ink masks: the paper divided out, then a hysteresis
    threshold against the paper's own noise, in relative and in absolute grey levels.

    A noisy frame (dim light) is thresholded smoothed too, and read that way when it shows more
    pieces of ink a digit tall or more that reach strong ink, of digits min_digit_px tall at the
    median (a smaller digit's strokes blur into a blob: a 1280x720 page of 15-px digits, 56 of its
    60 found plain, 47 smoothed); from cfg.noisy up, as many, of any size (the plain threshold's
    count holds pieces of noise, and strokes broken by it). Faint ink may be
    only a few noise sigmas darker than the paper in any one pixel, so that no threshold tells it
    from the noise, while averaged with its neighbours a stroke keeps most of its darkness and the
    noise loses most of its spread. (A paper's texture, or the spread of a page dense with ink,
    does not average out; and thin strokes, a page of small digits at its first look, fade: those
    keep their pixels.) The noise is measured in steps of 1.5 grey levels (the histogram's), so
    smoothing must take it down by a fifth: one step, from a noise of two steps or more. (A
    1280-px photo of a sheet in faint red ink, dimmed, at two steps: its strokes seeded at 8
    sigmas, 25 of its 161 digit-tall pieces were read plain, 122 smoothed.) A page (PAGE_PIECES
    digit-tall pieces that reach strong ink) is tried only when FAINT_SHARE of its digit-tall
    pieces do not: its faint digits, lost to the plain threshold in dim light (a page in good light
    has almost none: trying it would cost 3-4 ms, and read it no better).
    smooth: that choice, made on an earlier frame of the same scene (None: make it here).
    """
    bg = estimate_background(work, cfg)

    def smoothed(max_noise: float = np.inf) -> tuple[InkMasks | None, float]:
        return _threshold_ink(cv2.GaussianBlur(work, (3, 3), 0), bg, cfg, True, max_noise)

    if smooth:
        return smoothed()[0]
    masks, noise = _threshold_ink(work, bg, cfg)
    if smooth is not None or noise < cfg.smooth_noise:
        return masks
    tall, strong = _tall_pieces(masks, cfg)
    n = len(strong)
    if n >= PAGE_PIECES and tall - n < FAINT_SHARE * tall:  # a page in good light
        return masks
    other = smoothed(0.8 * noise)[0]
    if other is None:  # smoothing does not take the noise down
        return masks
    seen = _tall_pieces(other, cfg)[1]
    more = len(seen) >= n if noise >= cfg.noisy else len(seen) > n and np.median(seen) >= cfg.min_digit_px
    return other if more else masks


def _threshold_ink(work: np.ndarray, bg: np.ndarray, cfg: DetectConfig, smoothed: bool = False,
                   max_noise: float = np.inf) -> tuple[InkMasks | None, float]:
    """threshold_ink of a working frame (smoothed or not) over its background, and the paper's
    noise (sigma); no masks (None) where that noise is over max_noise.

    Each piece of ink must reach strong ink somewhere: 1.6 times the low levels, so that the
    noise does not seed pieces. Smoothing has already taken that noise down, and with it a
    faint stroke's darkest pixels: a smoothed frame's pieces need only pass the low levels (and
    the fraction of the frame's darkest ink that tells a smudge beside real writing)."""
    strong = 1.0 if smoothed else 1.6
    below = cv2.subtract(bg, work)  # grey levels under the background
    ink = ink_image(work, bg, below)
    paper = paper_only(ink, cfg)
    # Relative darkness divides by the background, so in a shadow sensor noise grows with it:
    # ink must also stand out from the noise in absolute grey levels.
    m, sigma = paper_noise(work, bg, paper)
    if sigma > max_noise:
        return None, sigma
    low, high = thresholds(ink, cfg, paper, strong)

    def above(rel: float, noise_k: float) -> np.ndarray:
        return cv2.bitwise_and(cv2.threshold(ink, rel, 1, cv2.THRESH_BINARY)[1],
                               cv2.threshold(below, -m + noise_k * sigma, 1, cv2.THRESH_BINARY)[1])

    mask = above(low, cfg.noise_k)
    return InkMasks(bg, below, ink, mask, above(high, strong * cfg.noise_k), None, components(mask),
                    smoothed=smoothed), sigma


def _tall_pieces(ink: InkMasks, cfg: DetectConfig) -> tuple[int, np.ndarray]:
    """How many pieces of the ink mask are at least min_height_px tall, and the heights of those
    of them that reach strong ink."""
    h = ink.pieces[2][1:, 3]
    tall = h >= cfg.min_height_px
    return int(np.count_nonzero(tall)), h[tall & ink.reach_strong[1:]]


def without_lines(ink: InkMasks, cfg: DetectConfig, last: Lines | None = None) -> InkMasks:
    """The ink masks with the ruled lines, a margin, a fold taken out (the digits on them stay);
    the same masks where there are none. last: the lines the previous frame of a video held."""
    def search(mask: np.ndarray, stats: np.ndarray, seed: Lines | None = None, grids: np.ndarray | None = None,
               ruled: bool = True):
        return line_mask(mask, stats, cfg.line_frac_w, cfg.line_frac_h, cfg.min_height_px, seed, grids, ruled)

    def long_left(pieces: tuple[int, np.ndarray, np.ndarray]) -> int:
        return long_pieces(pieces[2], *line_lengths(pieces[2], ink.mask.shape, cfg.line_frac_w, cfg.line_frac_h,
                                                    cfg.min_height_px))

    grids = grid_pieces(*ink.pieces[1:], cfg.line_frac_w, cfg.line_frac_h)
    lines, found = search(ink.mask, ink.pieces[2], last, grids)
    if lines is None:
        return ink
    mask = cv2.subtract(ink.mask, lines)
    pieces = components(mask)
    left = long_left(pieces)
    squared = grids is not None and grids.any() and found.one_way
    if (left or squared) and not found.seeded:
        # Squared paper: the Hough transform follows one direction of a grid, whose lines hold
        # the other's together; once they are out, the others are searched for again. What is
        # left of a grid is as large as lines both ways, and not a typical piece of ink even
        # where too few of its lines are left to close a cell (one row missed: its columns and
        # every digit on them were one piece, by whose height nothing was long, and nothing was
        # searched for or found).
        rest = line_sized(pieces[2], mask.shape, cfg.line_frac_w, cfg.line_frac_h) if squared else None
        more, again = search(mask, pieces[2], grids=rest, ruled=False)
        if more is not None:
            lines, mask = cv2.bitwise_or(lines, more), cv2.subtract(mask, more)
            pieces = components(mask)
            found, left = replace(found, found=found.found + again.found), long_left(pieces)
    found = replace(found, left=left)
    if found.seeded and found.left > last.left:  # a line the last frame did not have (a margin in view)
        return without_lines(ink, cfg)
    return replace(ink, mask=mask, lines=lines, pieces=pieces, found_lines=found)


PAGE_PIECES = 32  # a frame with this many digit-tall pieces of ink (or candidates) is a page of digits
# A page whose digit-tall pieces of ink miss strong ink this often holds faint digits: on the
# synthetic pages, 0-1.5 % in good light and mild dim light, 3.4-100 % where smoothing read more.
FAINT_SHARE = 0.03


@dataclass
class Pieces:
    """Connected pieces of ink that may be (parts of) digits."""

    mask: np.ndarray  # (h, w) uint8 {0, 1} the ink mask
    labels: np.ndarray  # (h, w) label image of the ink mask
    count: int  # labels in it, the background's included
    ids: np.ndarray  # (n,) labels of the pieces kept
    stats: np.ndarray  # (n, 5) x, y, w, h, area of each kept piece (working pixels)
    min_h: float  # the least height of a digit here
    n_tall: int  # pieces at least min_h tall...
    ref_h: float  # ...and their median height (min_h if none): on a page, its digits' height

    @functools.cached_property
    def perim(self) -> np.ndarray:
        """(n,) boundary length of each kept piece (when they are grouped: a page's first look,
        which only measures its digits' height, does without)."""
        edge = self.mask - cv2.erode(self.mask, _SQUARE3)
        return np.bincount(self.labels[edge.view(bool)], minlength=self.count).astype(np.float32)[self.ids]

    @property
    def digit_height(self) -> float:
        """The height digits are grouped by: on a page, ref_h; with fewer pieces, the median height
        by ink of those at least min_h tall (min_h if none): the height of the piece that holds the
        median pixel of their ink. In a close-up of one digit whose strokes are broken (a pen that
        skips, strokes cut by the ruled lines taken out), that is the digit's height, where ref_h
        is its fragments'; on a page written at several sizes, ref_h keeps a big digit from
        swallowing the small one under it, which the height by ink, a big digit's, let through."""
        if self.n_tall >= PAGE_PIECES or self.n_tall == 0:
            return self.ref_h
        tall = self.stats[:, 3] >= self.min_h
        h = self.stats[tall, 3]
        order = np.argsort(h, kind="stable")
        ink = np.cumsum(self.stats[tall, 4][order], dtype=np.float64)
        return float(h[order][np.searchsorted(ink, 0.5 * ink[-1])])

    @property
    def page_height(self) -> float | None:
        """The digits' median height when the pieces are a page's (PAGE_PIECES digit-tall ones or
        more, nearly all one piece a digit: the median of the digits found, measured on the
        synthetic pages), else None."""
        return self.ref_h if self.n_tall >= PAGE_PIECES else None


def find_pieces(ink: InkMasks, min_h: float, cfg: DetectConfig) -> Pieces:
    """The pieces of the ink mask that reach strong ink and are not specks."""
    n, labels, stats = ink.pieces
    strong = ink.reach_strong
    area = stats[:, 4]
    keep = strong & (area >= 3) & ((stats[:, 3] >= 0.15 * min_h) | (stats[:, 2] >= 0.15 * min_h))
    keep[0] = False
    ids = np.flatnonzero(keep)
    if len(ids) > cfg.max_pieces:  # a frame of noise: the biggest pieces, bounded work
        ids = ids[np.argsort(-area[ids], kind="stable")[:cfg.max_pieces]]
        ids.sort()
    heights = stats[ids, 3]
    tall = heights[heights >= min_h]
    return Pieces(ink.mask, labels, n, ids, stats[ids], min_h, len(tall), float(np.median(tall)) if len(tall) else min_h)


def digit_shapes(p: Pieces, cfg: DetectConfig) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Pieces grouped into digits, wide groups split at thin waists:
    (boxes (N, 4) int32 working pixels, N uint8 masks over the boxes, (N,) float32 stroke widths)."""
    st, min_h = p.stats, p.min_h
    gids, groups = np.unique(group_pieces(st, p.digit_height), return_inverse=True)
    ng = len(gids)
    top_left = np.full((ng, 2), np.iinfo(np.int32).max, np.int32)
    bottom_right = np.zeros((ng, 2), np.int32)
    np.minimum.at(top_left, groups, st[:, :2])
    np.maximum.at(bottom_right, groups, st[:, :2] + st[:, 2:4])
    boxes = np.concatenate([top_left, bottom_right - top_left], 1)
    g_area = np.bincount(groups, st[:, 4].astype(np.float32), ng)
    stroke = (2 * g_area / np.maximum(np.bincount(groups, p.perim, ng), 1)).astype(np.float32)
    group_of = np.full(p.count, -1, np.int32)  # label -> group, -1 for pieces left out
    group_of[p.ids] = groups
    # Wider than a digit: wider than max_aspect times its height, or, on a page of many digits,
    # far wider than the page's typical digit (two narrow digits that touch, "18", "36").
    tall = boxes[:, 3] >= min_h
    med_w = float(np.median(boxes[tall, 2])) if tall.sum() >= 5 else np.inf
    max_w = np.maximum(0.9 * boxes[:, 3], np.minimum(cfg.max_aspect * boxes[:, 3], cfg.wide_frac * med_w))

    # A group of one piece (most digits) is that piece's label; OpenCV compares 16-bit labels
    # many times faster than numpy looks groups up.
    single = (np.bincount(groups, minlength=ng) == 1).tolist()
    label_of = np.zeros(ng, np.int64)
    label_of[groups] = p.ids
    label_of = label_of.tolist()

    out_boxes, out_masks, out_stroke = [], [], []
    for g, ((x, y, bw, bh), sw, mw) in enumerate(zip(boxes.tolist(), stroke.tolist(), max_w.tolist())):
        if bh < min_h:  # nor is any part of it tall enough for a digit (see plausible)
            continue
        if not (cfg.split and bw > mw):  # one digit, and its box is already tight
            region = p.labels[y:y + bh, x:x + bw]
            m = (cv2.compare(region, label_of[g], cv2.CMP_EQ) if single[g] and region.dtype == np.uint16
                 else (group_of[region] == g).view(np.uint8) * np.uint8(255))
            if (inner := inside_frame(m)) is not None:
                ix, iy, bw, bh = inner  # a printed box: what is written inside it
                if bh < min_h:
                    continue
                m, x, y = m[iy:iy + bh, ix:ix + bw], x + ix, y + iy
            out_boxes.append((x, y, bw, bh))
            out_masks.append(m)
            out_stroke.append(sw)
            continue
        part_boxes, part_masks = _cut_out(split_touching(group_of[p.labels[y:y + bh, x:x + bw]] == g, sw, mw), x, y)
        out_boxes += part_boxes
        out_masks += part_masks
        out_stroke += [sw] * len(part_boxes)
    return np.array(out_boxes, np.int32).reshape(-1, 4), out_masks, np.array(out_stroke, np.float32)


def _cut_out(parts: list[np.ndarray], x: int, y: int) -> tuple[list[tuple[int, int, int, int]], list[np.ndarray]]:
    """Bool masks over a box whose top left is (x, y) -> each part's tight box (x, y, w, h) and its
    uint8 mask (255 = ink) over it; empty parts left out."""
    boxes, masks = [], []
    for part in parts:
        rr, cc = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
        if len(rr):
            boxes.append((x + cc[0], y + rr[0], cc[-1] - cc[0] + 1, rr[-1] - rr[0] + 1))
            masks.append(part[rr[0]:rr[-1] + 1, cc[0]:cc[-1] + 1].astype(np.uint8) * 255)
    return boxes, masks


def inside_frame(m: np.ndarray) -> tuple[int, int, int, int] | None:
    """For the mask (255 = ink) of a printed box's outline, with whatever is written inside it
    (a form's box, or a frame drawn around a number): the box (x, y, w, h) of the ink inside it,
    within the mask. None for anything else: a box's outline is ink nearly all along its four
    sides (three pixels deep, so a box turned a few degrees counts), near the mask's edges (a
    digit may poke out of its box), while a digit meets the sides of its own box at a few points."""
    h, w = m.shape
    if h < 28 or w < 28:  # a box that holds a digit, at least min_digit_px tall, with room around
        return None  # it (smaller bold digits, a 0 or an 8, fill their box's edges nearly all round)
    if cv2.countNonZero(m[::h - 1]) < 0.8 * w:  # its first and last rows: most digits end here
        return None
    ink = m > 0
    # Rows (columns) with ink nearly all across within three of them: where the outline runs.
    across = np.count_nonzero(ink[:-2] | ink[1:-1] | ink[2:], 1) >= 0.85 * w  # (h - 2,)
    down = np.count_nonzero(ink[:, :-2] | ink[:, 1:-1] | ink[:, 2:], 0) >= 0.85 * h
    rows, cols = np.flatnonzero(across), np.flatnonzero(down)
    if (not len(rows) or not len(cols) or rows[0] > h // 4 or rows[-1] < h - 3 - h // 4
            or cols[0] > w // 4 or cols[-1] < w - 3 - w // 4):
        return None
    # Inside: past each side's run of such rows (columns).
    t, l = rows[0] + np.argmin(across[rows[0]:]), cols[0] + np.argmin(down[cols[0]:])
    b, r = rows[-1] + 3 - np.argmin(across[rows[-1]::-1]), cols[-1] + 3 - np.argmin(down[cols[-1]::-1])
    # A printed outline is thin; a bold digit (an 8, a 0) is ink that deep all round.
    if max(t - rows[0], rows[-1] + 3 - b) > 0.1 * h + 3 or max(l - cols[0], cols[-1] + 3 - r) > 0.1 * w + 3:
        return None
    inner = ink[t:b, l:r]
    if inner.size == 0 or not inner.any():
        return 0, 0, 0, 0
    x, y, iw, ih = cv2.boundingRect(inner.view(np.uint8))
    return int(l) + x, int(t) + y, iw, ih


def _pieces_of(ink: InkMasks, cfg: DetectConfig) -> Pieces:
    h, w = ink.mask.shape
    return find_pieces(ink, max(cfg.min_height_px, cfg.min_height_frac * np.sqrt(h * w)), cfg)


def _pieces_at(work: np.ndarray, cfg: DetectConfig, last: Polarity | None = None) -> tuple[InkMasks, Pieces]:
    """Working grey frame (dark ink) -> its ink masks, ruled lines taken out, and pieces of ink.
    last: the scene's Polarity in a video (where its lines were, whether it was smoothed)."""
    smooth, lines = (None, None) if last is None else (last.smoothed, last.lines)
    ink = without_lines(threshold_ink(work, cfg, smooth), cfg, lines)
    return ink, _pieces_of(ink, cfg)


def _candidates_at(work: np.ndarray, cfg: DetectConfig, found: tuple[InkMasks, Pieces] | None = None,
                   last: Polarity | None = None) -> tuple[InkMasks, np.ndarray, list[np.ndarray]]:
    """Working grey frame (dark ink), and its _pieces_at if known -> its ink masks, and the boxes
    (N, 4) and masks of the candidates that have a digit's shape and stand out from their
    surroundings."""
    ink, pieces = found or _pieces_at(work, cfg, last)
    if len(pieces.ids) == 0:
        return ink, np.zeros((0, 4), np.int32), []
    boxes, masks, stroke = digit_shapes(pieces, cfg)
    keep = plausible(boxes, masks, stroke, work.shape, pieces.min_h, cfg)
    if ink.lines is not None:
        keep &= ~box_sides(boxes, ink.lines)
    sel = np.flatnonzero(keep)
    keep[sel] = stands_out(boxes[sel], [masks[i] for i in sel], work, ink, cfg)
    idx = np.flatnonzero(keep)
    return ink, boxes[idx], [masks[i] for i in idx]


def _has_wide_strokes(work: np.ndarray, cfg: DetectConfig, wide_cfg: DetectConfig) -> bool:
    """True when the wider background kernel sees paper where the normal one does not: ink
    wider than the normal kernel, which only a close-up has. Elsewhere both backgrounds are the
    same and so would be what they find (a few low-resolution pixels apart: a shadow's corner)."""
    diff = cv2.subtract(_background_small(work, wide_cfg), _background_small(work, cfg))
    return _count_above(diff, 255 * cfg.min_contrast, np.ones_like(diff)) > 0.005 * diff.size


def _is_closeup_of(wide: np.ndarray, wide_masks: list[np.ndarray], boxes: np.ndarray, shape: tuple[int, int],
                   cfg: DetectConfig) -> bool:
    """True when `wide` (boxes found with the close-up background kernel) is one digit that fills
    much of the frame and holds every box the normal pass found, and more (they were parts of it:
    the outlines of strokes too wide for the normal kernel)."""
    if len(wide) != 1 or is_blob(wide_masks[0]):
        return False
    x, y, w, h = wide[0]
    if h < cfg.closeup_frac * shape[0] and w < cfg.closeup_frac * shape[1]:
        return False
    inter_w = np.minimum(boxes[:, 0] + boxes[:, 2], x + w) - np.maximum(boxes[:, 0], x)
    inter_h = np.minimum(boxes[:, 1] + boxes[:, 3], y + h) - np.maximum(boxes[:, 1], y)
    area = boxes[:, 2] * boxes[:, 3]
    inside = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None) >= 0.9 * area
    return bool(inside.all()) and w * h >= 1.1 * area.max(initial=0)


def find_candidates(frame: np.ndarray, cfg: DetectConfig | None = None,
                    polarity: Polarity | None = None) -> Candidates:
    """Frame (H, W), (H, W, 3) BGR or (H, W, 4) BGRA uint8 -> digit candidates.

    polarity: the previous frame's Candidates.polarity in a video (reused while the picture stays
    nearly the same); None decides it from this frame alone.
    """
    cfg = cfg or DetectConfig()
    gray = to_gray(np.asarray(frame))
    if gray.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {gray.dtype}")
    s = work_scale(gray.shape, cfg)
    work = _resize(gray, s)
    polarity = decide_polarity(work, cfg, polarity)
    if polarity.light_on_dark:
        gray, work = 255 - gray, 255 - work
    s0, ink = s, None
    if polarity.scale is not None:  # the same page as the last frames: straight to the closer look
        closer = _resize(gray, polarity.scale)
        ink, boxes, masks = _candidates_at(closer, cfg, last=polarity)
        if len(boxes) >= 3 and 0.8 <= np.median(boxes[:, 3]) / polarity.digit_px <= 1.25:
            s, work = polarity.scale, closer
        else:  # the page moved closer or away: look afresh
            ink = None
    if ink is None:
        # Small digits (a whole page in view, a small photo of a row): look again at a resolution
        # where they are min_digit_px tall, so touching neighbours can be told apart; at most the
        # full frame, or 1.5 times the working size where that is larger (a small photo). A
        # page's pieces tell its digits' height before they are grouped and tested: straight on.
        limit = max(1.0, 1.5 * cfg.work_size * np.sqrt(0.75 / max(gray.size, 1)))

        def too_small(height: float | None) -> bool:
            return s < limit and height is not None and height < cfg.min_digit_px

        # A page's digits show their height before its ruled lines are taken out (those on a
        # line join it, the others are enough): a page of small digits is not searched for
        # lines at a size it will not be read at.
        ink = threshold_ink(work, cfg, polarity.smoothed)
        pieces = _pieces_of(ink, cfg)
        if not too_small(pieces.page_height) and (lined := without_lines(ink, cfg, polarity.lines)) is not ink:
            ink, pieces = lined, _pieces_of(lined, cfg)
        height = pieces.page_height
        if not too_small(height):
            ink, boxes, masks = _candidates_at(work, cfg, (ink, pieces))
            height = float(np.median(boxes[:, 3])) if len(boxes) >= 3 else None
        if too_small(height):
            s1 = min(limit, s * cfg.min_digit_px / height)
            closer = _resize(gray, s1)
            found = _candidates_at(closer, cfg, last=polarity)
            if len(found[1]) == 0:
                # Nothing there: the small pieces were not digits (fragments of rules or of noise);
                # the first look's candidates tall enough to be read at its size are the frame's
                # digits, if it has any.
                if pieces.page_height is not None:  # the first look only measured them
                    ink, boxes, masks = _candidates_at(work, cfg, (ink, pieces))
                tall = np.flatnonzero(boxes[:, 3] >= cfg.min_digit_px)
                if len(tall):
                    found, s1, closer = (ink, boxes[tall], [masks[i] for i in tall]), s, work
            ink, boxes, masks = found
            s, work = s1, closer
    digit_px = float(np.median(boxes[:, 3])) if s != s0 and len(boxes) else 0.0
    polarity = replace(polarity, scale=s if digit_px else None, digit_px=digit_px, lines=ink.found_lines,
                       smoothed=ink.smoothed)
    if len(boxes) <= 2:  # maybe a close-up whose strokes are wider than the background kernel
        wide_cfg = replace(cfg, bg_kernel_frac=cfg.closeup_kernel_frac)
        if _has_wide_strokes(work, cfg, wide_cfg):
            wide = _candidates_at(work, wide_cfg)
            if _is_closeup_of(wide[1], wide[2], boxes, work.shape, cfg):
                ink, boxes, masks = wide
    dropped = max(0, len(boxes) - cfg.max_digits)
    if dropped:  # hostile input only (thousands of specks): the largest are kept, and it is said
        idx = np.sort(np.argsort(-(boxes[:, 3].astype(np.int64) * boxes[:, 2]), kind="stable")[:cfg.max_digits])
        boxes, masks = boxes[idx], [masks[i] for i in idx]
    # The debug view shows ink white and the ruled lines taken out of it grey.
    debug = ink.mask * 255 if ink.lines is None else cv2.add(ink.mask * 255, ink.lines * 128)
    return Candidates(_in_frame(boxes, s, gray.shape), masks, boxes, s, gray, ink.background, ink.ink, debug,
                      polarity.light_on_dark, polarity, dropped)


def _in_frame(boxes: np.ndarray, s: float, shape: tuple[int, int]) -> np.ndarray:
    """Boxes (N, 4) in working pixels -> in frame pixels, inside the frame (an enlarged working
    image can round past its edge)."""
    H, W = shape
    x0y0 = np.minimum(np.round(boxes[:, :2] / s), [W - 1, H - 1])
    x1y1 = np.minimum(np.round((boxes[:, :2] + boxes[:, 2:]) / s), [W, H])
    return np.concatenate([x0y0, np.maximum(x1y1 - x0y0, 1)], 1).astype(np.int32).reshape(-1, 4)


def maybe_two(c: Candidates, which: np.ndarray, cfg: DetectConfig) -> list[tuple[int, np.ndarray, list[np.ndarray]]]:
    """Of the candidates `which` (indices) of a page or a row of digits (five candidates or more),
    those wider than maybe_two_frac times the typical one (and than 0.9 of their height) that
    split_touching parts at a thin waist into parts each nearly as tall as the whole: (index, the
    parts' boxes (k, 4) in working pixels, their masks). Two touching digits ("18", a 1 leaning on
    its neighbour) are narrower than wide_frac times the typical digit, as wide as a wide 0 or 4:
    parted by their shape alone, more single digits were parted than pairs (the model decides,
    Pipeline._read_pairs)."""
    boxes = c.boxes_work
    if len(boxes) < 5 or not cfg.split or len(which) == 0:
        return []
    w, h = boxes[which, 2], boxes[which, 3]
    max_w = np.maximum(0.9 * h, np.minimum(cfg.max_aspect * h, cfg.maybe_two_frac * float(np.median(boxes[:, 2]))))
    wide = w > max_w
    out = []
    for i, mw in zip(which[wide].tolist(), max_w[wide].tolist()):
        m = c.masks[i] > 0
        parts = split_touching(m, stroke_width(c.masks[i]), mw)
        part_boxes, part_masks = _cut_out(parts if len(parts) >= 2 else [], *boxes[i, :2].tolist())
        # Digits side by side are each as tall as the pair; a wide 0 or 4 parts into a short side.
        if part_boxes and min(ph for *_, ph in part_boxes) >= 0.9 * boxes[i, 3]:
            out.append((i, np.array(part_boxes, np.int32), part_masks))
    return out


def plausible(boxes: np.ndarray, masks: list[np.ndarray], stroke: np.ndarray, shape: tuple[int, int],
              min_h: float, cfg: DetectConfig) -> np.ndarray:
    """(N,) bool: which candidates have the shape of a handwritten digit.

    Rejected: too small; wider than a digit; solid blobs (a fingertip, a dark table corner);
    hair-thin long lines (a paper edge, a ruler); specks much smaller than the frame's other
    digits (on a page, smaller); and, unless it is the picture itself (see closeup), anything
    too tall or wide for the frame or touching its edge.
    """
    h, w = shape
    x, y, bw, bh = (boxes[:, i].astype(np.float32) for i in range(4))
    area = np.array([np.count_nonzero(m) for m in masks], np.float32)
    fill = area / np.maximum(bw * bh, 1)
    ok = (bh >= min_h) & (bw <= 1.6 * cfg.max_aspect * bh)  # a slanted or wide digit, not a line
    # A marker's strokes on small digits are bolder: whole strokes where they are far narrower
    # than the background kernel (not the outlines of a close-up's wider ones).
    fine = stroke <= 0.2 * cfg.bg_kernel_frac * max(h, w)  # see estimate_background
    ok &= stroke <= np.where(fine, cfg.bold_stroke_frac, cfg.max_stroke_frac) * bh
    bold = stroke > cfg.max_stroke_frac * bh
    thin = bw <= 3 * stroke + 2  # a '1': a single stroke, its box is full of ink
    ok &= thin | (fill <= 0.85)
    # A hair-thin long line (a paper edge, a ruler's edge) is not a '1'; a '1' drawn as one
    # straight stroke with a thick pen or seen close up is a bar many times its width, too.
    width = np.maximum(bw, stroke)
    ok &= (bh <= 12 * width) | (width >= 0.01 * max(h, w))
    # Whatever touches the frame's edge is cut off by it: the table, the sheet's border, or a
    # digit only partly in view, which cannot be read reliably either.
    edges = (x <= 0).astype(np.int32) + (y <= 0) + (x + bw >= w) + (y + bh >= h)  # frame edges touched
    clear = edges == 0
    inside = clear & (bh <= cfg.max_height_frac * h) & (bw <= cfg.max_width_frac * w)
    # The picture itself is held to a digit's proportions: strokes neither hair-thin (lines
    # crossing the frame) nor as thick as a blob (a fingertip), ink not filling its box.
    # (Digits cut tight from MNIST: stroke 0.13 of the height at the median, 0.25 at most; fill
    # at most 0.8, 0.63 for 99 %.) Clear of the frame's edges, where no line crossing it lies,
    # the stroke may be as fine as a ballpoint's on a digit filling the frame (0.012 of its height).
    shaped = ok & (stroke >= np.where(clear, 0.008, 0.02) * bh) & (stroke <= 0.24 * bh) & (thin | (fill <= 0.7))
    ok &= inside | closeup(boxes, masks, shaped, stroke, thin & (fill > 0.85), edges, shape, cfg)
    if ok.sum() >= 2:  # beside one other candidate, a speck is small next to it
        ref = float(np.median(bh[ok]) if ok.sum() >= 3 else bh[ok].max())
        ok &= bh >= (cfg.page_rel_height if ok.sum() >= PAGE_PIECES else cfg.min_rel_height) * ref
        ok &= ~bold | (bh >= 0.5 * ref)  # and a bold speck is small beside the frame's digits
    return ok


def box_sides(boxes: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """(N,) bool: the candidates that are the sides of printed boxes (a form's row of boxes to
    write digits in), left standing like 1s once the boxes' tops and bottoms were taken out as
    lines (lines: the mask of those taken out): bars whose both ends lie on lines taken out,
    three or more of them side by side from the same line to the same line. A handwritten 1
    rarely meets both lines, and never at the same places as its neighbours."""
    x, y, w, h = (boxes[:, i] for i in range(4))
    out = np.zeros(len(boxes), bool)
    ends = []
    for i in np.flatnonzero(w <= 0.35 * h).tolist():
        x0, x1 = max(0, x[i] - 3), x[i] + w[i] + 3
        if lines[max(0, y[i] - 2):y[i] + 3, x0:x1].any() and lines[max(0, y[i] + h[i] - 3):y[i] + h[i] + 2, x0:x1].any():
            ends.append(i)
    for i in ends:
        same = [j for j in ends if abs(y[j] - y[i]) <= 2 and abs(y[j] + h[j] - y[i] - h[i]) <= 2]
        out[i] = len(same) >= 3
    return out


CLOSEUP_OTHERS = 3  # candidates of digit shape beside a close-up (real close-ups: 0-2)


def closeup(boxes: np.ndarray, masks: list[np.ndarray], ok: np.ndarray, stroke: np.ndarray, bar: np.ndarray,
            edges: np.ndarray, shape: tuple[int, int], cfg: DetectConfig) -> np.ndarray:
    """(N,) bool: the candidate that is the picture itself (a photo or crop of one digit, a digit
    held close to the camera), which may touch or cross the frame's edges.

    It is large in the frame (closeup_frac of its height or width) and dwarfs every other
    candidate of digit shape (twice as tall), of which there are few (bits of its neighbours; a
    page of digits is no close-up, whatever else in it is large). A solid bar (bar: its box full
    of ink) or a fine straight stroke from one edge to another (edges: how many of the frame's
    edges each candidate touches) is a strip of table, the sheet's border or a pen line across
    the picture, not a '1' (a thick one seen close up may touch every edge).
    """
    h, w = shape
    out = np.zeros(len(boxes), bool)
    if not ok.any():
        return out
    bw, bh = boxes[:, 2], boxes[:, 3]
    i = int(np.flatnonzero(ok)[np.argmax(bh[ok])])
    others = np.delete(bh[ok], np.flatnonzero(np.flatnonzero(ok) == i))
    big = bh[i] >= cfg.closeup_frac * h or bw[i] >= cfg.closeup_frac * w
    line = edges[i] >= 2 and (bar[i] or stroke[i] < 0.05 * bh[i]) and is_straight(masks[i], stroke[i])
    few = len(others) <= CLOSEUP_OTHERS
    out[i] = big and few and bool(np.all(others < 0.5 * bh[i])) and not line and not is_blob(masks[i])
    return out


def is_straight(mask: np.ndarray, stroke: float) -> bool:
    """True when every ink pixel of the mask (255 = ink) lies within a stroke's width of one
    straight line: a bar or a line, not a digit's strokes."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 2:
        return True
    vx, vy, x0, y0 = cv2.fitLine(np.column_stack([xs, ys]).astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
    return float(np.abs((xs - x0) * vy - (ys - y0) * vx).max()) <= max(float(stroke), 1.0)


def is_blob(mask: np.ndarray) -> bool:
    """True for a solid, roundish shape (a fingertip, a knuckle) rather than pen strokes: its ink
    fills its convex hull and it is not slender like a '1'. uint8 mask, 255 = ink."""
    contours = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return False
    c = max(contours, key=cv2.contourArea)
    solidity = cv2.countNonZero(mask) / max(cv2.contourArea(cv2.convexHull(c)), 1.0)
    w, h = cv2.minAreaRect(c)[1]
    return solidity > 0.9 and max(w, h) < 3.5 * min(w, h)


SURROUND_BRIGHT = 32  # grey levels (see stands_out)


def stands_out(boxes: np.ndarray, masks: list[np.ndarray], work: np.ndarray, ink: InkMasks,
               cfg: DetectConfig) -> np.ndarray:
    """(N,) bool: which candidates are far darker than the texture of the surface around them.

    The noise level used for thresholding is the paper's; a wood table, a carpet or a sliver
    of table at the sheet's edge is much rougher, and its darker grain can pass that threshold.
    Ink stands out from its own surroundings by many times their local spread.
    """
    if len(boxes) == 0:
        return np.zeros(0, bool)
    h, w = work.shape
    # The rules of ruled paper taken out are no texture of the paper either: a rule darker than
    # the pale or pencilled digits written on it was most of their surroundings, and none stood
    # out. A grid's lines, which leave fragments as they cross, stay in.
    ruled = ink.found_lines is not None and ink.found_lines.one_way
    mask = cv2.bitwise_or(ink.mask, ink.lines) if ruled else ink.mask
    bg, near_ink = ink.background, np.ones((5, 5), np.uint8)
    x, y, bw, bh = (boxes[:, i].astype(np.int64) for i in range(4))
    r = np.maximum(3, (0.25 * bh).astype(np.int64))
    x0, y0 = np.maximum(0, x - r), np.maximum(0, y - r)
    x1, y1 = np.minimum(w, x + bw + r), np.minimum(h, y + bh + r)
    # Away from any ink and its blurred edge, and relative to the background (so the slope of a
    # shadow is not counted as roughness). Paper brighter than its background by more than
    # SURROUND_BRIGHT is not grain: it is the bright side of a sharp shadow edge, which the
    # background pulls in (see _background_small); counted in full, it made every digit along a
    # shadow's edge look no darker than its surroundings. (In 8 bits, offset by that much: OpenCV
    # integrates them over ten times faster than floats, and grain far darker than the paper is
    # rough in any case.)
    if len(boxes) < PAGE_PIECES:  # each candidate's surroundings alone: 10 us each, against 0.4-0.7 ms
        # for the whole-image integrals
        n, spread = np.zeros((2, len(boxes)))
        for i, (a0, b0, a1, b1) in enumerate(zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist())):
            g0, h0 = max(0, a0 - 2), max(0, b0 - 2)  # grown by the dilation's reach, then cut back
            cut = (slice(b0 - h0, b0 - h0 + b1 - b0), slice(a0 - g0, a0 - g0 + a1 - a0))
            near = cv2.dilate(mask[h0:b1 + 2, g0:a1 + 2], near_ink)[cut]
            away = cv2.threshold(near, 0, 1, cv2.THRESH_BINARY_INV)[1]
            d = cv2.addWeighted(bg[b0:b1, a0:a1], 1, work[b0:b1, a0:a1], -1, SURROUND_BRIGHT)
            n[i] = cv2.countNonZero(away)
            spread[i] = cv2.meanStdDev(d, mask=away)[1][0, 0] + 1.0
    else:  # sums over each candidate's surroundings from integral images: a page of hundreds of
        # digits costs a few whole-image operations
        away = cv2.threshold(cv2.dilate(mask, near_ink), 0, 1, cv2.THRESH_BINARY_INV)[1]
        d_away = cv2.multiply(cv2.addWeighted(bg, 1, work, -1, SURROUND_BRIGHT), away)
        n_sum = cv2.integral(away)
        s1, s2 = cv2.integral2(d_away, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)

        def box_sum(ii: np.ndarray) -> np.ndarray:
            return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]

        n, m1, m2 = box_sum(n_sum).astype(np.float64), box_sum(s1).astype(np.float64), box_sum(s2)
        mean = m1 / np.maximum(n, 1)
        spread = np.sqrt(np.maximum(m2 / np.maximum(n, 1) - mean ** 2, 0)) + 1.0
    contrast = np.array([cv2.mean(ink.below[yy:yy + hh, xx:xx + ww], mask=m)[0]
                         for (xx, yy, ww, hh), m in zip(boxes.tolist(), masks)])
    return (n < 10) | (contrast >= cfg.local_snr * spread)
