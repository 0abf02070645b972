"""Reading order: digits grouped into lines and numbers, left to right, top to bottom.

A line is grown left to right, each digit joining the line whose rightmost digit it overlaps
most vertically, so a sheet held at a slant still reads line by line. Inside a line a gap wider
than a fraction of the digit height starts a new number; in a video, a gap near that fraction
keeps the last frame's decision (see reading_order's `last`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Reading:
    order: np.ndarray  # (N,) int64 indices of the boxes in reading order
    line: np.ndarray  # (N,) int64 line of each box (0 = top), indexed like the boxes
    number: np.ndarray  # (N,) int64 number of each box, counted over the whole frame in reading order
    numbers: list[str]  # the numbers read, in reading order (empty when no digits are given)
    lines: list[list[int]]  # per line, its numbers' positions in `numbers`


def reading_order(boxes: np.ndarray, digits: np.ndarray | None = None, min_overlap: float = 0.4,
                  number_gap: float = 0.55, ids: np.ndarray | None = None,
                  last: dict[tuple[int, int], bool] | None = None, hysteresis: float = 0.1) -> Reading:
    """boxes (N, 4) x, y, w, h; digits (N,) ints or None.

    min_overlap: vertical overlap, as a fraction of the shorter box, that puts two neighbours on
    one line. number_gap: a horizontal gap wider than this times the line's median digit height
    separates two numbers.
    ids, last: in a video, the digits' track ids and, for neighbours in a line the frame before,
    whether they were one number (`joined_pairs`). Such neighbours stay so until their gap passes
    number_gap by `hysteresis` (of the digit height) the other way: a gap near the threshold,
    which a box a pixel wider or narrower crosses, would split and join the numbers read from one
    frame to the next.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Reading(z, z.copy(), z.copy(), [], [])
    x, y, w, h = boxes.T
    ys, hs = y.tolist(), h.tolist()  # Python floats for the scalar loops (200 digits: 1.8 -> 0.7 ms)
    chains: list[list[int]] = []
    ends: list[tuple[float, float, float]] = []  # top, bottom and height of each chain's last box
    for i in np.lexsort((y, x)).tolist():  # left to right
        top, h_i = ys[i], hs[i]
        bottom = top + h_i
        best, best_ov = -1, 0.0
        for k, (t, b, hk) in enumerate(ends):  # (conditionals: min() and max() cost twice as much here)
            ov = ((b if b < bottom else bottom) - (t if t > top else top)) / max(hk if hk < h_i else h_i, 1e-6)
            if ov >= min_overlap and ov > best_ov:
                best, best_ov = k, ov
        if best < 0:
            chains.append([i])
            ends.append((top, bottom, h_i))
        else:
            chains[best].append(i)
            ends[best] = (top, bottom, h_i)
    chains.sort(key=lambda ch: float(np.median(y[ch] + h[ch] / 2)))

    xs, ws = x.tolist(), w.tolist()
    line = np.zeros(n, np.int64)
    number = np.zeros(n, np.int64)
    order, numbers, lines = [], [], []
    for li, ch in enumerate(chains):
        med_h = float(np.median(h[ch]))
        line_nums = [len(numbers)]
        numbers.append("")
        for k, i in enumerate(ch):
            limit = number_gap
            if k and last:
                was = last.get((int(ids[ch[k - 1]]), int(ids[i])))
                limit += 0.0 if was is None else hysteresis if was else -hysteresis
            if k and xs[i] - (xs[ch[k - 1]] + ws[ch[k - 1]]) > limit * med_h:
                line_nums.append(len(numbers))
                numbers.append("")
            line[i], number[i] = li, len(numbers) - 1
            if digits is not None:
                numbers[-1] += str(int(digits[i]))
            order.append(i)
        lines.append(line_nums)
    if digits is None:
        numbers = []
    return Reading(np.array(order, np.int64), line, number, numbers, lines)


def joined_pairs(reading: Reading, ids: np.ndarray) -> dict[tuple[int, int], bool]:
    """For each two neighbours in a line (by id, left first), whether they are one number: the
    `last` of the next frame's reading_order."""
    o = reading.order
    same_line = reading.line[o[1:]] == reading.line[o[:-1]]
    joined = reading.number[o[1:]] == reading.number[o[:-1]]
    return {(a, b): j for a, b, j, s in zip(ids[o[:-1]].tolist(), ids[o[1:]].tolist(), joined.tolist(),
                                            same_line.tolist()) if s}
