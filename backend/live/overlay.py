"""Drawing the readings on a frame: boxes, labels, attention heatmaps, numbers, inset, HUD.

Pure functions (supervision's annotators are the model): they take a BGR uint8 frame and numpy
arrays and return a new BGR uint8 image; they never open windows or files. Every layer can be
switched off in ``OverlayConfig``. Sizes scale with the frame, so labels stay readable from a
320x240 test clip to a 1080p camera.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from backend.frame.mnist import FIT_SIZE, IMG_SIZE
from backend.frame.detections import Detections

FONT = cv2.FONT_HERSHEY_DUPLEX
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
RED = (60, 60, 235)
# Label colours by confidence (BGR): sure, fairly sure, unsure.
CONF_COLOURS = ((0.9, (90, 210, 60)), (0.7, (40, 200, 240)), (0.0, (40, 140, 255)))
REJECT_COLOUR = (70, 70, 220)
# OpenCV's JET colour map as a (256, 1, 3) BGR table: with a built-in map, cv2.applyColorMap
# rebuilds its table on every call, which costs more than tinting the box.
JET = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)
JET.flags.writeable = False

HELP_LINES = (
    ("q / Esc", "quit"),
    ("space", "pause / resume"),
    ("r", "start / stop recording"),
    ("a", "attention heatmaps"),
    ("m", "model-input inset (28x28 crops)"),
    ("d", "debug view: threshold mask + candidates"),
    ("s", "save a snapshot PNG"),
    ("c", "clear the draw pad (--draw)"),
    ("n / p", "next / previous image (a folder)"),
    ("h", "this help"),
)


@dataclass
class OverlayConfig:
    boxes: bool = True  # a box around each digit
    labels: bool = True  # digit and confidence above the box
    attention: bool = True  # the CLS attention map as a heatmap inside the box
    attention_kind: str = "rollout"  # "rollout" (all layers) or "last" (last layer only)
    numbers: bool = True  # the numbers read, line by line
    inset: bool = True  # strip of the 28x28 crops the model sees
    hud: bool = True  # FPS, per-stage latency, device, model
    debug: bool = False  # show the threshold mask and every candidate instead of the frame
    help: bool = False  # key help panel
    heat_strength: float = 0.55  # 0..1, how strongly the heatmap tints the paper under it


@dataclass
class HudInfo:
    fps: float = 0.0  # frames per second of the whole loop
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage (detect, preprocess, model, draw)
    device: str = ""
    model: str = ""
    recording: str | None = None  # file being recorded, if any
    paused: bool = False
    status: str = ""  # a short message shown for a moment (snapshot saved, end of input, ...)


def ui_scale(frame: np.ndarray) -> float:
    """Size unit for text and lines: 1.0 at 720 px of frame height."""
    return float(np.clip(max(frame.shape[0], frame.shape[1] * 9 / 16) / 720.0, 0.45, 3.0))


@lru_cache(maxsize=4096)
def text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
    """(width, height above the baseline) of `text` in pixels; labels repeat, so sizes are cached."""
    return cv2.getTextSize(text, FONT, scale, thickness)[0]


def conf_colour(conf: float) -> tuple[int, int, int]:
    for threshold, colour in CONF_COLOURS:
        if conf >= threshold:
            return colour
    return CONF_COLOURS[-1][1]


def shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    """Darken a rectangle in place: a translucent panel behind text."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha) + 0.5).astype(np.uint8)


def put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=WHITE, thickness: int = 1,
             outline: bool = False) -> None:
    if outline:
        cv2.putText(img, text, org, FONT, scale, BLACK, thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


# A pixel's share of the tint by its brightness: clip(lum / 180, 0.15, 1), as a table of the 256 levels.
_PAPER_WEIGHT = np.clip(np.arange(256, dtype=np.uint8) * np.float32(1 / 180.0), 0.15, 1.0)
_MEAN_BGR = np.full((1, 3), 1 / 3)


@lru_cache(maxsize=512)
def _upsampler(g: int, n: int) -> np.ndarray:
    """(n, g) float32: cubic resizing is linear and separable, resize(A) = R A R^T with R the
    resized identity, so only a box's rows and columns of the (n, n) map need computing."""
    r = cv2.resize(np.eye(g, dtype=np.float32), (g, n), interpolation=cv2.INTER_CUBIC)
    r.flags.writeable = False
    return r


def heatmap_tints(img: np.ndarray, boxes: np.ndarray, attns: np.ndarray, strength: float) -> None:
    """Tint each box (x, y, w, h) in place by its attention map (g, g), in turn, keeping the ink
    visible.

    A map covers the 28x28 model input, where the digit fills the central 20x20; it is laid back
    over its box on that geometry. The blend multiplies the frame by the colour map, so dark ink
    stays dark and only the paper around it takes the colour, in proportion to attention. Boxes
    that overlap none before them in their run are tinted side by side in one image: a page's
    hundreds of boxes each paid a dozen small calls for a few hundred pixels.
    """
    H, W = img.shape[:2]
    todo = []  # (x0, y0, x1, y1, the map over that part of the frame) of each box to tint
    for box, attn in zip(boxes, np.clip(attns, 0, 1, dtype=np.float32)):
        x, y, w, h = (int(v) for v in box)
        if w < 2 or h < 2 or attn.size == 0:
            continue
        side = max(w, h) * IMG_SIZE / FIT_SIZE
        cx, cy = x + w / 2.0, y + h / 2.0
        # Where the box lies inside the map's square, in map pixels.
        n = max(2, int(round(side)))
        ox, oy = int(round(cx - side / 2)), int(round(cy - side / 2))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        mx0, my0 = x0 - ox, y0 - oy
        if x1 <= x0 or y1 <= y0 or mx0 < 0 or my0 < 0 or mx0 + x1 - x0 > n or my0 + y1 - y0 > n:
            continue
        a = _upsampler(attn.shape[0], n)
        todo.append((x0, y0, x1, y1, a[my0:my0 + y1 - y0] @ attn @ a[mx0:mx0 + x1 - x0].T))
    for run in _runs_apart(todo):
        # The run's boxes side by side: their maps, and the frame under them.
        left = np.cumsum([0] + [x1 - x0 for x0, _, x1, _, _ in run]).tolist()
        a = np.zeros((max(y1 - y0 for _, y0, _, y1, _ in run), left[-1]), np.float32)
        roi = np.zeros((*a.shape, 3), np.uint8)
        for (x0, y0, x1, y1, m), l in zip(run, left):
            a[:y1 - y0, l:l + x1 - x0] = m
            roi[:y1 - y0, l:l + x1 - x0] = img[y0:y1, x0:x1]
        # Diffuse low attention is left untinted, so the hot spots stand out on clean paper.
        a -= 0.1
        a /= 0.9
        np.maximum(a, 0, out=a)  # (np.clip costs several times more)
        np.minimum(a, 1, out=a)
        colours = cv2.applyColorMap((a * 255).astype(np.uint8), JET)
        # Bright paper takes the colour, dark ink keeps most of its own: the digit stays readable.
        lum = cv2.transform(roi, _MEAN_BGR)  # (h, w) uint8 mean of B, G, R
        k = strength * (a * np.sqrt(a)) * _PAPER_WEIGHT[lum]
        roi = cv2.blendLinear(roi, colours, 1.0 - k, k)
        for (x0, y0, x1, y1, _), l in zip(run, left):
            img[y0:y1, x0:x1] = roi[:y1 - y0, l:l + x1 - x0]


def _runs_apart(parts: list[tuple]) -> list[list[tuple]]:
    """parts (x0, y0, x1, y1, ...) in runs, in order, none of which overlaps another of its run:
    tinted together, each sees the frame as the ones before it left it."""
    if not parts:
        return []
    r = np.array([p[:4] for p in parts])
    over = np.tril((r[:, None, 0] < r[None, :, 2]) & (r[None, :, 0] < r[:, None, 2])
                   & (r[:, None, 1] < r[None, :, 3]) & (r[None, :, 1] < r[:, None, 3]), -1)
    last = np.where(over.any(1), len(parts) - 1 - over[:, ::-1].argmax(1), -1).tolist()  # the latest before each it overlaps
    starts = [0]
    for k, j in enumerate(last):
        if j >= starts[-1]:
            starts.append(k)
    return [parts[a:b] for a, b in zip(starts, starts[1:] + [len(parts)])]


# --- layout: what must stay visible, and where the rest can go --------------------------------

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, end exclusive
MIN_FONT = 0.4  # smallest Hershey scale that stays legible (capitals ~8 px): spaces stay visible


# What a panel placed over a pixel would hide, per cell (Layout.find weighs them): a digit's box,
# or text (a label, another panel).
ABOVE_DIGIT, ABOVE_TEXT = 1, 50


class Layout:
    """The frame's occupied pixels: digit boxes first, then each label and panel as it is placed.

    Labels go where they cover neither another digit nor another label; panels go to the free
    place nearest their corner, smaller when they do not fit, and translucent as a last resort.
    The rectangles are kept (``boxes``, ``labels``, ``panels``) so tests can check the layout.
    """

    def __init__(self, shape: tuple[int, ...], boxes: np.ndarray):
        self.h, self.w = shape[:2]
        self.taken = np.zeros((self.h, self.w), np.uint8)
        # Panels are searched for on cells of k x k pixels (any pixel taken: the cell is), so
        # a 4000-pixel photo costs no more than a 1000-pixel frame.
        self.k = max(1, -(-max(self.h, self.w) // 1024))
        self.cells = np.zeros((-(-self.h // self.k), -(-self.w // self.k)), np.uint8)
        self.boxes: list[Rect] = []
        self.labels: list[Rect] = []
        self.panels: dict[str, Rect] = {}
        self._integral: np.ndarray | None = None  # of `taken`, kept until something is placed
        for x, y, w, h in np.asarray(boxes, np.int64).reshape(-1, 4):
            self.boxes.append(self._clip((x - 1, y - 1, x + w + 2, y + h + 2)))  # the box's line included
            self.take(self.boxes[-1], ABOVE_DIGIT)

    def _clip(self, r: Rect) -> Rect:
        return max(0, r[0]), max(0, r[1]), min(self.w, r[2]), min(self.h, r[3])

    def take(self, r: Rect, cost: int = ABOVE_TEXT) -> None:
        """Occupy r; cost: how much a panel placed over it there would hide (see find)."""
        x0, y0, x1, y1 = self._clip(r)
        self.taken[y0:y1, x0:x1] = 1
        k = self.k
        cells = self.cells[y0 // k:-(-y1 // k), x0 // k:-(-x1 // k)]
        np.maximum(cells, cost, out=cells)
        self._integral = None

    def is_free(self, r: Rect) -> bool:
        inside = r[0] >= 0 and r[1] >= 0 and r[2] <= self.w and r[3] <= self.h
        return inside and (r[2] <= r[0] or r[3] <= r[1] or not cv2.hasNonZero(self.taken[r[1]:r[3], r[0]:r[2]]))

    def find(self, width: int, height: int, prefer: tuple[float, float], margin: int) -> tuple[Rect, int] | None:
        """The width x height place with the fewest occupied pixels, nearest the preferred point
        (fractions of the frame: (0, 0) top left, (1, 1) bottom right), and those pixels (about,
        weighed by their cost: where a close-up's box covers the whole frame, a panel goes over
        the digit rather than over another panel or a label); None when it does not fit at all."""
        k = self.k
        W, H = self.w // k, self.h // k  # cells wholly inside the frame
        w, h, m = -(-width // k), -(-height // k), -(-margin // k)  # the panel and margin in cells, rounded up
        if w > W or h > H:
            return None
        m = m if w + 2 * m <= W and h + 2 * m <= H else 0
        step = max(1, max(4, min(self.w, self.h) // 60) // k)  # about 60 places a side
        xs, ys = np.arange(m, W - w - m + step, step), np.arange(m, H - h - m + step, step)
        xs[-1], ys[-1] = W - w - m, H - h - m  # the far edges are candidates too
        if self._integral is None:
            self._integral = cv2.integral(self.cells)  # (rows + 1, cols + 1) int32: the cost of the cells above and left
        ii = self._integral
        covered = ii[ys + h][:, xs + w] - ii[ys][:, xs + w] - ii[ys + h][:, xs] + ii[ys][:, xs]
        dist = (np.abs(ys - prefer[1] * (H - h - 2 * m) - m)[:, None] / H
                + np.abs(xs - prefer[0] * (W - w - 2 * m) - m)[None, :] / W)
        i, j = np.unravel_index(np.argmin(covered * 4.0 + dist), covered.shape)
        x, y = int(xs[j]) * k, int(ys[i]) * k
        return (x, y, x + width, y + height), int(covered[i, j]) * k * k


# --- labels --------------------------------------------------------------------------------------

Parts = tuple[tuple[str, float], ...]  # a label's pieces of text and their font scales


def label_parts(digit: int, conf: float, fs: float, extra: str = "") -> Parts:
    """A label's pieces, drawn apart so they never run together: the digit, its confidence smaller."""
    small = max(MIN_FONT, 0.72 * fs)
    return ((str(digit), fs),) + (((f"{100 * conf:.0f}%", small),) if conf >= 0 else ()) + \
        (((extra, small),) if extra else ())


@lru_cache(maxsize=4096)
def parts_size(parts: Parts, th: int) -> tuple[int, int, int]:
    """(width, height above the baseline, gap between parts) of label pieces in pixels."""
    sizes = [text_size(t, f, th) for t, f in parts]
    gap = max(3, int(round(0.45 * sizes[0][0])))
    return sum(w for w, _ in sizes) + gap * (len(parts) - 1), max(h for _, h in sizes), gap


def place_label(layout: Layout, box: np.ndarray, digit: int, conf: float, s: float,
                extra: str = "") -> tuple[Rect, Parts, int] | None:
    """Where the label of `box` goes: above it, else below, the confidence dropped and the text
    smaller when crowded; a close-up's (no room above nor below in the frame) beside its top, else
    inside its top corner; None when even the digit alone fits nowhere."""
    x, y, w, h = (int(v) for v in box)
    th = max(1, int(round(1.4 * s)))
    base = max(min(max(h / 100.0, 0.5), 1.0) * s, MIN_FONT)
    small = max(MIN_FONT, 0.75 * base)

    def label(fs: float, full: bool) -> tuple[Parts, int, int]:
        parts = label_parts(digit, conf if full else -1.0, fs, extra if full else "")
        tw, tht, _ = parts_size(parts, th)
        pad = max(1, int(round(2.5 * s * fs / base)))
        return parts, tw + 2 * pad, tht + 2 * pad + th

    def placed(r: Rect, parts: Parts) -> tuple[Rect, Parts, int]:
        layout.take(r)
        layout.labels.append(r)
        return r, parts, th

    # Each size of label measured once (a crowded page tries them all, in six places each); one
    # the same size as the last is not tried again.
    variants = [label(fs, full) for fs, full in ((base, True), (base, False), (small, False), (MIN_FONT, False))]
    variants = [v for i, v in enumerate(variants) if i == 0 or v[1:] != variants[i - 1][1:]]

    # Every label covers the smallest one placed at the same spot (they share a corner, or a
    # centre and a side), so where the smallest does not fit, none does: the spots are tried at
    # that size first, and a crowded page's labels that fit nowhere cost six tests, not 24.
    _, lw0, lh0 = variants[-1]
    covers = all(lw >= lw0 and lh >= lh0 for _, lw, lh in variants)

    def first_free(spots) -> tuple[Rect, Parts, int] | None:
        room = [not covers or layout.is_free((lx, ly, lx + lw0, ly + lh0)) for lx, ly in spots(lw0, lh0)]
        if not any(room):
            return None
        for parts, lw, lh in variants:
            for ok, (lx, ly) in zip(room, spots(lw, lh)):
                r = (lx, ly, lx + lw, ly + lh)
                if ok and layout.is_free(r):
                    return placed(r, parts)
        return None

    # Above the box before below it, so each label reads as its own digit's; only the digit
    # when the confidence would not fit, smaller as a last resort.
    found = (first_free(lambda lw, lh: [(lx, y - lh - 1) for lx in (x + (w - lw) // 2, x, x + w - lw)])
             or first_free(lambda lw, lh: [(lx, y + h + 2) for lx in (x + (w - lw) // 2, x, x + w - lw)]))
    if found:
        return found
    # Beside the box or inside it only where the frame leaves no room above it nor below it (a
    # close-up): on a page, a label beside a digit would read as its neighbour's.
    lh_min = variants[-1][2]
    if not (y - lh_min - 1 < 0 and y + h + 2 + lh_min > layout.h):
        return None
    found = first_free(lambda lw, lh: [(x - lw - 2, y), (x + w + 2, y)])
    if found:
        return found
    parts, lw, lh = variants[0]
    r = (x + 2 * th, y + 2 * th, x + 2 * th + lw, y + 2 * th + lh)
    if r[2] <= min(x + w, layout.w) and r[3] <= min(y + h, layout.h) and \
            not any(r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3] for o in layout.labels):
        return placed(r, parts)
    return None


def draw_label(img: np.ndarray, rect: Rect, parts: Parts, th: int, colour) -> None:
    """A filled label in the box's colour, its pieces in dark text on one baseline."""
    x0, y0, x1, y1 = rect
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
    tw, tht, gap = parts_size(parts, th)
    x = x0 + (x1 - x0 - tw) // 2
    baseline = y0 + (y1 - y0 + tht) // 2 - th // 2
    for text, fs in parts:
        put_text(img, text, (x, baseline), fs, (20, 20, 20), th)
        x += text_size(text, fs, th)[0] + gap


def draw_detections(img: np.ndarray, dets: Detections, cfg: OverlayConfig, s: float, layout: Layout,
                    show_ids: bool = False) -> None:
    attn = dets.attn if cfg.attention_kind == "rollout" or dets.attn_last is None else dets.attn_last
    if cfg.attention and attn is not None:
        heatmap_tints(img, dets.boxes, attn, cfg.heat_strength)
    lw = max(1, int(round(2 * s)))
    for box, conf in zip(dets.boxes, dets.confidence):
        if cfg.boxes:
            x, y, w, h = (int(v) for v in box)
            cv2.rectangle(img, (x, y), (x + w, y + h), conf_colour(float(conf)), lw, cv2.LINE_AA)
    if not cfg.labels:
        return
    for i, (box, digit, conf) in enumerate(zip(dets.boxes, dets.digits, dets.confidence)):
        extra = f"#{int(dets.track_ids[i])}" if show_ids and dets.track_ids is not None else ""
        placed = place_label(layout, box, int(digit), float(conf), s, extra)
        if placed is not None:
            draw_label(img, placed[0], placed[1], placed[2], conf_colour(float(conf)))


# --- panels --------------------------------------------------------------------------------------

Row = tuple[str, tuple[int, int, int], float]  # text ("key\tvalue": two columns), colour, relative size


def _panel_metrics(rows: list[Row], fs: float, s: float) -> tuple[int, int, list[float], int]:
    """(padding, stroke, each row's font scale, width of the first column of tabbed rows)."""
    pad = max(3, int(round(8 * s * fs)))
    th = max(1, int(round(1.6 * s * fs)))
    scales = [max(MIN_FONT, fs * k) for _, _, k in rows]  # a small title stays legible
    col = max((text_size(t.split("\t")[0], f, th)[0] for (t, _, _), f in zip(rows, scales)
               if "\t" in t), default=0)
    return pad, th, scales, col + (int(round(24 * fs)) if col else 0)


def text_panel_size(rows: list[Row], fs: float, s: float) -> tuple[int, int]:
    pad, th, scales, col = _panel_metrics(rows, fs, s)
    w = max((col if "\t" in t else 0) + text_size(t.split("\t")[-1], f, th)[0]
            for (t, _, _), f in zip(rows, scales))
    return w + 2 * pad, sum(int(round(30 * f)) for f in scales) + 2 * pad


def draw_text_panel(img: np.ndarray, rect: Rect, rows: list[Row], fs: float, s: float, alpha: float) -> None:
    x0, y0, x1, y1 = rect
    shade(img, x0, y0, x1, y1, alpha)
    pad, th, scales, col = _panel_metrics(rows, fs, s)
    y = y0 + pad
    for (text, colour, _), f in zip(rows, scales):
        lh = int(round(30 * f))
        base = y + lh - int(round(9 * f))
        if colour == RED:  # a recording dot before the file name
            r = max(2, int(round(8 * f)))
            cv2.circle(img, (x0 + pad + r, y + lh // 2), r, RED, -1, cv2.LINE_AA)
            text = "    " + text[5:]
        if "\t" in text:
            key, text = text.split("\t")
            put_text(img, key, (x0 + pad, base), f, (120, 255, 140), th)
            put_text(img, text, (x0 + pad + col, base), f, colour, th)
        else:
            put_text(img, text, (x0 + pad, base), f, colour, th)
        y += lh


def place_panel(layout: Layout, name: str, variants: list[tuple[list[Row], float]], prefer: tuple[float, float],
                s: float, modal: bool = False) -> tuple[Rect, list[Row], float, float] | None:
    """The first variant (rows, font scale), largest first, that fits on free pixels; else the
    last one where it covers least, translucent, or (modal: the help the user asked for) the
    first one at its preferred place, dark. Returns (rect, rows, font scale, shade alpha)."""
    margin = max(2, int(round(8 * s)))
    best = None
    for rows, fs in variants:
        found = layout.find(*text_panel_size(rows, fs, s), prefer, margin)
        if found is None:
            continue
        if found[1] == 0:
            best = (found[0], rows, fs, 0.65)
            break
        best = (found[0], rows, fs, 0.3)
    else:
        if modal:
            rows, fs = variants[0]
            w, h = text_panel_size(rows, fs, s)
            x, y = max(0, int(prefer[0] * (layout.w - w))), max(0, int(prefer[1] * (layout.h - h)))
            best = ((x, y, x + w, y + h), rows, fs, 0.8)
    if best is not None:
        layout.take(best[0])
        layout.panels[name] = best[0]
    return best


def shrinking(rows: list[Row], fs: float) -> list[tuple[list[Row], float]]:
    """A panel's rows at its font scale, then smaller down to the smallest legible one."""
    return [(rows, max(MIN_FONT, fs * k)) for k in (1.0, 0.8, 0.65)]


def hud_variants(hud: HudInfo, n_digits: int, s: float) -> list[tuple[list[Row], float]]:
    """FPS and per-stage latency, device and model, recording and pause state; then one line;
    then only the state (recording, paused) when nothing else fits."""
    t = hud.timings
    stages = "   ".join(f"{k} {t[k]:.1f}" for k in ("detect", "preprocess", "model", "draw") if k in t)
    state = ([(f"REC  {hud.recording}", RED, 1.0)] if hud.recording else []) + \
        ([("PAUSED  (space to resume)", (40, 200, 240), 1.0)] if hud.paused else [])
    # No rate before a second frame (a photo has none): its stage times only.
    rate = [f"FPS {hud.fps:.1f}"] if hud.fps else []
    first = "    ".join(rate + ([f"{stages} ms"] if stages else []))
    full = ([(first, WHITE, 1.0)] if first else []) + \
        [(f"{hud.device}   |   {hud.model}   |   {n_digits} digit{'s' if n_digits != 1 else ''}", WHITE, 1.0)]
    total = sum(t.get(k, 0.0) for k in ("detect", "preprocess", "model", "draw"))
    line = (f"{hud.fps:.0f} fps   " if hud.fps else "") + f"{total:.0f} ms   {hud.device}"
    tiny = [("REC" if c == RED else "PAUSED", c, k) for _, c, k in state]
    short = [(line, WHITE, 1.0)] + tiny
    fs = 0.5 * s
    return shrinking(full + state, fs) + shrinking(short, fs) + (shrinking(tiny, fs) if tiny else [])


def numbers_variants(lines: list[str], s: float) -> list[tuple[list[Row], float]]:
    """The numbers read, one row per line of writing under a title; fewer rows when crowded."""
    out = []
    for keep in (6, 3, 1):
        shown = lines[:keep] + ([f"... {len(lines) - keep} more lines"] if len(lines) > keep else [])
        rows = [("numbers read", (200, 200, 200), 0.7)] + [(t, (120, 255, 140), 1.0) for t in shown]
        out += shrinking(rows, 0.8 * s)
    return out


def draw_inset(img: np.ndarray, dets: Detections, s: float, layout: Layout) -> None:
    """The 28x28 crops the model actually sees, enlarged, with the digit read from each; fewer
    and smaller crops where space is short, none when they would cover a digit."""
    if dets.crops is None or len(dets) == 0:
        return
    gap = max(2, int(round(4 * s)))
    fs = max(MIN_FONT * 0.9, 0.4 * s)
    title_w = text_size("input", fs)[0] + 2 * gap  # the panel is never narrower than its title
    for cell in (max(28, int(round(56 * s))), 28):
        label_h = max(12, int(round(0.36 * cell)))
        title_h = max(12, int(round(20 * s)))
        for n in (min(len(dets), 8), min(len(dets), 4), 1):
            width = max(n * (cell + gap) + gap, title_w)
            found = layout.find(width, title_h + cell + label_h + 2 * gap, (1.0, 1.0), max(2, int(round(8 * s))))
            if found is not None and found[1] == 0:
                break
        else:
            continue
        break
    else:
        return
    (x0, y0, x1, y1), _ = found
    layout.take(found[0])
    layout.panels["inset"] = found[0]
    shade(img, x0, y0, x1, y1, 0.7)
    title = "model input 28x28" if text_size("model input 28x28", fs)[0] < width else "input"
    put_text(img, title, (x0 + gap, y0 + title_h - gap), fs, (200, 200, 200), 1)
    for i in range(n):  # detections come in reading order
        cx, cy = x0 + gap + i * (cell + gap), y0 + title_h + gap
        crop = cv2.resize(dets.crops[i], (cell, cell), interpolation=cv2.INTER_NEAREST)
        img[cy:cy + cell, cx:cx + cell] = crop[..., None]
        cv2.rectangle(img, (cx, cy), (cx + cell - 1, cy + cell - 1), (90, 90, 90), 1)
        t = str(int(dets.digits[i]))
        tw = text_size(t, fs * 1.2)[0]
        put_text(img, t, (cx + (cell - tw) // 2, cy + cell + label_h - gap), fs * 1.2,
                 conf_colour(float(dets.confidence[i])), 1)


def help_rows() -> list[Row]:
    return [("keys", (40, 200, 240), 1.1)] + [(f"{k}\t{d}", WHITE, 1.0) for k, d in HELP_LINES]


def debug_view(frame: np.ndarray, mask: np.ndarray | None, dets: Detections, rejected: Detections | None,
               s: float) -> np.ndarray:
    """The detector's threshold mask over a dimmed frame, every candidate boxed: accepted in
    green with its reading, rejected in red with its confidence."""
    img = (frame.astype(np.float32) * 0.35).astype(np.uint8)
    if mask is not None and mask.size:
        m = cv2.resize(mask, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        img[m] = (255, 230, 120)
    lw = max(1, int(round(2 * s)))
    if rejected is not None:
        for box, digit, conf in zip(rejected.boxes, rejected.digits, rejected.confidence):
            x, y, w, h = (int(v) for v in box)
            cv2.rectangle(img, (x, y), (x + w, y + h), REJECT_COLOUR, lw)
            put_text(img, f"{int(digit)}? {100 * float(conf):.0f}%", (x, max(12, y - 4)), 0.45 * s, REJECT_COLOUR, 1)
    for box in dets.boxes:
        x, y, w, h = (int(v) for v in box)
        cv2.rectangle(img, (x, y), (x + w, y + h), (90, 210, 60), lw)
    return img


def draw_overlay(frame: np.ndarray, dets: Detections, lines: list[str], cfg: OverlayConfig,
                 hud: HudInfo | None = None, rejected: Detections | None = None,
                 mask: np.ndarray | None = None, layout: Layout | None = None) -> np.ndarray:
    """Frame (H, W, 3) BGR uint8 + readings -> a new annotated BGR uint8 image of the same size.

    dets: the digits to show (boxes in frame pixels); lines: the numbers read, one string per
    line of writing (numbers separated by spaces); mask: the detector's threshold mask (any size,
    for the debug view); rejected: low-confidence candidates. Labels and panels are placed where
    they hide no digit (see Layout); pass `layout` to see where they went.
    """
    s = ui_scale(frame)
    layout = layout if layout is not None else Layout(frame.shape, dets.boxes)
    if cfg.debug:
        img = debug_view(frame, mask, dets, rejected, s)
        draw_detections(img, dets, OverlayConfig(attention=False), s, layout, show_ids=True)
    else:
        img = frame.copy()
        draw_detections(img, dets, cfg, s, layout)
    panels = []  # (name, variants, preferred place); the first placed gets the best spot
    if hud is not None and hud.status:
        panels.append(("status", shrinking([(hud.status, WHITE, 1.0)], 0.65 * s), (0.5, 0.0)))
    if cfg.hud and hud is not None:
        panels.append(("hud", hud_variants(hud, len(dets), s), (0.0, 0.0)))
    if cfg.numbers and lines:
        panels.append(("numbers", numbers_variants(lines, s), (1.0, 0.0)))
    for name, variants, prefer in panels:
        placed = place_panel(layout, name, variants, prefer, s)
        if placed is not None:
            draw_text_panel(img, placed[0], placed[1], placed[2], s, placed[3])
    if cfg.inset:
        draw_inset(img, dets, s, layout)
    if cfg.help:  # last: where it hides nothing, else over the middle until h closes it
        placed = place_panel(layout, "help", shrinking(help_rows(), 0.6 * s), (0.5, 0.5), s, modal=True)
        draw_text_panel(img, placed[0], placed[1], placed[2], s, placed[3])
    return img
