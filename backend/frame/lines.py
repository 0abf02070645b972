"""Ruled lines, margins and folds: the long straight lines of a threshold mask, found at any
slant and taken out of it, while the digit strokes that cross them stay."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def fit_line(u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) of v = a * u + b: np.polyfit(u, v, 1) in closed form, without its
    SVD, which costs more than the rest of the line search."""
    u, v = u.astype(np.float64), v.astype(np.float64)
    mu, mv = u.mean(), v.mean()
    du = u - mu
    a = float(du @ (v - mv)) / max(float(du @ du), 1e-12)
    return a, float(mv) - a * float(mu)


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) (linear interpolation) of a non-empty 1-D array, by partial sorting:
    np.percentile's own overhead is many times the work on a few thousand pixels."""
    i = q / 100 * (values.size - 1)
    lo = int(i)
    hi = min(lo + 1, values.size - 1)
    v = np.partition(values, (lo, hi))
    return float(v[lo] + (i - lo) * (v[hi] - v[lo]))


@dataclass
class Lines:
    """The lines a mask held, to look for again in the next frame of a video: the mask's shape,
    each line found as (horizontal, a, b, u0, u1): v = a * u + b for u from u0 to u1 (u = x for a
    horizontal line, else y), whether they were found where the last frame's were, and how many
    pieces long enough to be lines were left once they were taken out (backend.frame.detect)."""

    shape: tuple[int, int]
    found: list[tuple[bool, float, float, int, int]]
    seeded: bool = False
    left: int = 0

    @property
    def one_way(self) -> bool:
        """All the lines run one way: ruled paper, not a grid."""
        return len({line[0] for line in self.found}) == 1


def line_lengths(stats: np.ndarray, shape: tuple[int, int], line_frac_w: float, line_frac_h: float,
                 min_height_px: int, grids: np.ndarray | None = None) -> tuple[int, int]:
    """(lh, lv): how long a horizontal and a vertical piece of a mask of this shape, with these
    pieces (connectedComponentsWithStats), must be to be a line: longer than a fraction of the
    frame, and far longer than the typical piece of ink, so a strip of one line of digits, or a
    close-up of a single tall 1, keeps its strokes. grids: (count - 1,) bool, pieces that are a
    grid of lines (see grid_pieces), which are not typical."""
    h, w = shape
    lh, lv = max(3, int(line_frac_w * w)), max(3, int(line_frac_h * h))
    st = stats[1:]
    # Several pieces as long as lines (a grid's columns once its rows are out) are not typical
    # either; a close-up's one tall digit is.
    long = (st[:, 2] >= lh) | (st[:, 3] >= lv)
    # Nor is a hair-thin line (what plausible rejects as one: a grid's column cut off by the
    # frame's edge from the rest of the grid set the typical height at 480 px, and no line was
    # looked for).
    short_side = np.minimum(st[:, 2], st[:, 3])
    hair = (np.maximum(st[:, 2], st[:, 3]) > 12 * short_side) & (short_side < 0.01 * max(h, w))
    usual = ((st[:, 3] >= min_height_px) & (st[:, 4] >= 10) & ~(long & (np.count_nonzero(long) >= 3))
             & ~(long & hair))
    sized = st[usual if grids is None else usual & ~grids, 3]
    typical = float(np.median(sized)) if len(sized) else 0.0
    return max(lh, int(2.5 * typical)), max(lv, int(2.5 * typical))


def line_sized(stats: np.ndarray, shape: tuple[int, int], line_frac_w: float, line_frac_h: float) -> np.ndarray:
    """(count - 1,) bool: the pieces (connectedComponentsWithStats) as wide and as tall as lines."""
    h, w = shape
    return (stats[1:, 2] >= line_frac_w * w) & (stats[1:, 3] >= line_frac_h * h)


def grid_pieces(labels: np.ndarray, stats: np.ndarray, line_frac_w: float, line_frac_h: float) -> np.ndarray | None:
    """(count - 1,) bool: the pieces that are a grid (squared paper, which joins every digit on it
    into one piece): as wide and as tall as lines, with many holes (a close-up digit has a few
    at most). None where no piece is that large (nearly every frame: nothing is counted)."""
    st = stats[1:]
    big = np.flatnonzero(line_sized(stats, labels.shape, line_frac_w, line_frac_h))
    if not len(big):
        return None
    grids = np.zeros(len(st), bool)
    for i in big.tolist():
        x, y, bw, bh = st[i, :4].tolist()
        outside = cv2.compare(labels[y:y + bh, x:x + bw], i + 1, cv2.CMP_NE)
        holes = cv2.connectedComponentsWithStats(outside, connectivity=4)[2][1:, 4]
        grids[i] = np.count_nonzero(holes >= 16) >= 6
    return grids


def long_pieces(stats: np.ndarray, lh: int, lv: int) -> int:
    """How many of the pieces (connectedComponentsWithStats) are long enough to be lines."""
    return int(((stats[1:, 2] >= lh) | (stats[1:, 3] >= lv)).sum())


def line_mask(mask: np.ndarray, stats: np.ndarray, line_frac_w: float, line_frac_h: float, min_height_px: int,
              last: Lines | None = None, grids: np.ndarray | None = None,
              ruled: bool = True) -> tuple[np.ndarray | None, Lines | None]:
    """The straight horizontal and vertical lines of a {0, 1} mask, far longer than any digit's
    stroke (ruled paper, a margin, a fold, a ruler), grown by a pixel (None if there are none),
    and the Lines found. Only frames with a piece of ink at least that long, or a flat one half
    that long, are searched, so frames without lines cost nothing.

    last: the Lines of the previous frame of a video (the same picture, moved a little): they are
    looked for near their places, without the Hough transform (which costs half the search);
    the caller checks that they leave no more long pieces than they did there.
    ruled: False for squared paper's second search, whose lines are a grid's, not bold rules."""
    h, w = mask.shape
    lh, lv = line_lengths(stats, (h, w), line_frac_w, line_frac_h, min_height_px, grids)
    # A faint rule breaks into dashes, and the row of digits on it joins some of them into a flat
    # piece half a line long: searched too (such a page, moved by parts of a pixel, had no piece a
    # line long in some positions, and the row on its rule was lost with it). Not a close-up
    # digit's stroke half a line long: a search then took a 7's broken bar for a line.
    st = stats[1:]
    half = ((st[:, 2] >= lh // 2) & (st[:, 2] >= 4 * st[:, 3])) | ((st[:, 3] >= lv // 2) & (st[:, 3] >= 4 * st[:, 2]))
    if long_pieces(stats, lh, lv) == 0 and not half.any():
        return None, None
    drawn = None
    if last is not None and last.shape == (h, w) and last.found:
        # In a band wide enough for the page to have moved a little.
        segs = [(u0, a * u0 + b, u1, a * u1 + b) if hor else (a * u0 + b, u0, a * u1 + b, u1)
                for hor, a, b, u0, u1 in last.found]
        drawn = _draw_lines(mask, np.rint(segs).astype(int), lh, lv, band=9)
        # Searched afresh when one is not there any more: a line left in the mask joins the digits
        # on it into one piece, which leaves no more long pieces than before where one of them was
        # long already (a close-up 7 on squared paper, its bar along a grid line: the row across
        # the frame read as one candidate, then none).
        if not _all_found(last.found, drawn[2], (h, w)):
            drawn = None
    seeded = drawn is not None
    if drawn is None:
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
            return None, None
        drawn = _draw_lines(mask, 2 * segs.reshape(-1, 4), lh, lv, band=5)
    flat, steep, found, widths, fulls = drawn
    if not found:
        return None, None
    # Where a digit's stroke crosses the line the ink runs on across it: keep those pixels, so
    # the digit stays whole and only the bare line goes. Across means wider than the line (twice
    # its bare thickness), so a close-up's pen stroke that runs along a fine grid line is kept
    # too. The lines' typical thickness counts, but a line across the frame (half of it at least,
    # and nearly as much as the longest line) that is thicker has its own, so a page's thick rules
    # go as its thin ones do; one that is not may be a digit's stroke seen close (found where its
    # piece was long enough).
    # A page ruled one way with bold rules (BOLD pixels of ink across or more, four rules apart
    # at least: ruled paper seen close or blurred, a form's bold lines) has each bold rule that
    # spans it taken out by its own width and 2 px more, with a stroke test 3 px longer than it
    # (up to 15): a 5-px band left its edges, which joined the digits on it into a line.
    lines = Lines((h, w), found, seeded)
    typical = float(np.median(widths))
    ks = np.full(len(found), int(np.clip(2 * typical + 1, 5, 9)))
    thick = np.full(len(found), 5)
    bold = (ruled and (grids is None or not grids.any()) and lines.one_way and max(fulls) >= BOLD
            and _distinct(found, (h, w), max(fulls)) >= 4)
    if np.clip(2 * max(widths) + 1, 5, 9) > ks[0] or bold:  # a line thick enough for a test of its own
        spans = [_span(mask, line) for line in found]
        spanning = max(0.5, 0.8 * max(spans))
        for i, (bare, full, span) in enumerate(zip(widths, fulls, spans)):
            if bold and full >= BOLD and span >= spanning:
                ks[i], thick[i] = min(round(full) + 3, 15), round(full) + 2
            elif bare > typical and span >= spanning:
                ks[i] = int(np.clip(2 * bare + 1, 5, 9))
    if (ks == ks[0]).all() and (thick == 5).all():  # one test for all: the lines as drawn while found
        bands = {(int(ks[0]), 5): (flat, steep)}
    else:
        bands = {}
        for line, k, t in zip(found, ks.tolist(), thick.tolist()):
            _draw(bands.setdefault((k, t), (np.zeros_like(mask), np.zeros_like(mask)))[0 if line[0] else 1], line, t)
    out = np.zeros_like(mask)
    for (k, _), (flat, steep) in bands.items():
        for band, kernel in ((flat, (k, 1)), (steep, (1, k))):
            across = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones(kernel, np.uint8))
            out |= cv2.bitwise_and(band, cv2.subtract(mask, across))
    return out, lines


BOLD = 8  # pixels of ink across a rule (its full width) from which it is taken out by that width


def _at_middle(line: tuple[bool, float, float, int, int], shape: tuple[int, int]) -> float:
    """Where a line (horizontal, a, b, u0, u1) is at the frame's middle, across it (v at the
    middle u)."""
    horizontal, a, b = line[:3]
    return a * (shape[1] if horizontal else shape[0]) / 2 + b


def _all_found(before: list, now: list, shape: tuple[int, int]) -> bool:
    """Whether each of the lines found `before` (horizontal, a, b, u0, u1) is found `now`: a line
    the same way within 6 pixels of it at the frame's middle."""
    here, then = ([(line[0], _at_middle(line, shape)) for line in lines] for lines in (now, before))
    return all(any(h == g and abs(v - u) <= 6 for g, u in here) for h, v in then)


def _distinct(found: list, shape: tuple[int, int], thick: float) -> int:
    """How many of the lines found (all one way) are more than twice `thick` apart at the frame's
    middle: one thick line is often found as several side by side."""
    at = np.sort([_at_middle(line, shape) for line in found])
    return 1 + int((np.diff(at) > 2 * thick).sum())


def _draw(img: np.ndarray, line: tuple[bool, float, float, int, int], thickness: int = 5) -> None:
    """Draw a line (horizontal, a, b, u0, u1) from edge to edge of the image."""
    horizontal, a, b = line[:3]
    h, w = img.shape
    p0, p1 = ((0, b), (w - 1, a * (w - 1) + b)) if horizontal else ((b, 0), (a * (h - 1) + b, h - 1))
    cv2.line(img, (round(p0[0]), round(p0[1])), (round(p1[0]), round(p1[1])), 1, thickness)


def _span(mask: np.ndarray, line: tuple[bool, float, float, int, int]) -> float:
    """How much of the frame a line (horizontal, a, b, u0, u1) runs across with ink within a
    pixel of it: the share of its length from edge to edge (a ruled line: the sheet's width)."""
    horizontal, a, b = line[:3]
    h, w = mask.shape
    u = np.arange(w if horizontal else h)
    v = np.clip(np.rint(a * u + b).astype(int)[None] + np.arange(-1, 2)[:, None], 0, (h if horizontal else w) - 1)
    return float(((mask[v, u] if horizontal else mask[u, v]) > 0).any(0).mean())


def _draw_lines(mask: np.ndarray, segs: np.ndarray, lh: int, lv: int, band: int):
    """The lines along segments (N, 4) x0, y0, x1, y1 of the mask, each refitted to the ink in
    a band this wide around it and drawn edge to edge: (flat, steep, found, widths, fulls), the
    horizontal and the vertical lines drawn 5 pixels wide, each line's (horizontal, a, b, u0, u1),
    how thick its bare ink is (the lower quartile over its length, pixels) and how wide its ink
    is in all (the median within 6 pixels either side, pixels)."""
    h, w = mask.shape
    flat, steep = np.zeros_like(mask), np.zeros_like(mask)
    found, widths, fulls = [], [], []
    r = band // 2 + 1
    for x0, y0, x1, y1 in np.clip(segs, 0, [w - 1, h - 1, w - 1, h - 1]).tolist():
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
            bx0, by0 = max(0, min(x0, x1) - r), max(0, min(y0, y1) - r)
            bx1, by1 = max(x0, x1) + r + 1, max(y0, y1) + r + 1
            seg = np.zeros_like(mask[by0:by1, bx0:bx1])
            cv2.line(seg, (x0 - bx0, y0 - by0), (x1 - bx0, y1 - by0), 1, band)
            inked = cv2.bitwise_and(seg, mask[by0:by1, bx0:bx1])
            if cv2.countNonZero(inked) < 2:
                continue
            # A line is ink nearly all along (below): if the band around the segment is not, the
            # line fitted inside it is not either. A row of digits' tops, which the transform
            # also lines up, ends here, before the fits (detection of a ruled sheet of 200 digits
            # at 640x480: 49 -> 38 ms; the same lines on 257 masks of photos and scenes), told from
            # which places along it have ink, before its pixels are listed (most segments of a
            # ruled page of digits end here).
            along = np.flatnonzero(inked.any(0 if horizontal else 1))
            if len(along) / (along[-1] - along[0] + 1) < 0.7:
                continue
            ys, xs = np.nonzero(inked)
            ys, xs = ys + by0, xs + bx0
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
            # (13, len(uu)) bool: ink 6 pixels either side of the line, in one gather for every test.
            vk = np.clip(vv + np.arange(-6, 7)[:, None], 0, (h if horizontal else w) - 1)
            off = (mask[vk, uu] if horizontal else mask[uu, vk]) > 0
            if off[5:8].any(0).mean() < 0.7:
                continue
            # Ink 5 pixels off on both sides nearly all along, and not right across the frame: a
            # broad pen stroke (the bar of a 5 seen close up), not a ruled line or a strip of table.
            if off[[1, 11]].all(0).mean() >= 0.5 and len(uu) < 0.8 * (w if horizontal else h):
                continue
            found.append((horizontal, a, b, int(u.min()), int(u.max())))
            _draw(drawn, found[-1])
            # The bare ink within 3 pixels, all of it within 6.
            on = off[3:10].sum(0)
            widths.append(percentile(on[on > 0], 25))
            on = off.sum(0)
            fulls.append(percentile(on[on > 0], 50))
    return flat, steep, found, widths, fulls
