"""Drawing the readings on a frame: boxes, labels, attention heatmaps, numbers, inset, HUD.

Pure functions (supervision's annotators are the model): they take a BGR uint8 frame and numpy
arrays and return a new BGR uint8 image; they never open windows or files. Every layer can be
switched off in ``OverlayConfig``. Sizes scale with the frame, so labels stay readable from a
320x240 test clip to a 1080p camera.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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


def heatmap_tint(img: np.ndarray, box: np.ndarray, attn: np.ndarray, strength: float) -> None:
    """Tint the box in place by the attention map, keeping the ink visible.

    The (g, g) map covers the 28x28 model input, where the digit fills the central 20x20; it is
    laid back over the box on that geometry. The blend multiplies the frame by the colour map, so
    dark ink stays dark and only the paper around it takes the colour, in proportion to attention.
    """
    x, y, w, h = (int(v) for v in box)
    if w < 2 or h < 2 or attn.size == 0:
        return
    side = max(w, h) * IMG_SIZE / FIT_SIZE
    cx, cy = x + w / 2.0, y + h / 2.0
    # Where the box lies inside the map's square, in map pixels.
    n = max(2, int(round(side)))
    ox, oy = int(round(cx - side / 2)), int(round(cy - side / 2))
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    mx0, my0 = x0 - ox, y0 - oy
    if x1 <= x0 or y1 <= y0 or mx0 < 0 or my0 < 0 or mx0 + x1 - x0 > n or my0 + y1 - y0 > n:
        return
    # Cubic resizing is linear and separable: resize(A) = R A R^T, with R the (n, g) resized
    # identity. Only the box's rows and columns of the (n, n) map are computed.
    r = cv2.resize(np.eye(attn.shape[0], dtype=np.float32), (attn.shape[0], n), interpolation=cv2.INTER_CUBIC)
    a = r[my0:my0 + y1 - y0] @ np.clip(attn.astype(np.float32), 0, 1) @ r[mx0:mx0 + x1 - x0].T
    # Diffuse low attention is left untinted, so the hot spots stand out on clean paper.
    a = np.clip((a - 0.1) / 0.9, 0, 1)
    colours = cv2.applyColorMap((a * 255).astype(np.uint8), JET)
    roi = img[y0:y1, x0:x1]
    # Bright paper takes the colour, dark ink keeps most of its own: the digit stays readable.
    lum = cv2.transform(roi, np.full((1, 3), 1 / 3))  # (h, w) uint8 mean of B, G, R
    k = strength * (a * np.sqrt(a)) * np.clip(lum * np.float32(1 / 180.0), 0.15, 1.0)
    roi[:] = cv2.blendLinear(roi, colours, 1.0 - k, k)


def draw_label(img: np.ndarray, box: np.ndarray, text: str, colour, s: float) -> None:
    """A filled label with dark text above the box (inside its top edge when there is no room)."""
    x, y, w, h = (int(v) for v in box)
    fs = min(max(h / 100.0, 0.5), 1.0) * s
    th = max(1, int(round(1.6 * s)))
    (tw, tht), base = cv2.getTextSize(text, FONT, fs, th)
    pad = max(2, int(round(4 * s)))
    top = y - tht - base - 2 * pad
    if top < 0:
        top = y
    x0 = min(max(x, 0), max(0, img.shape[1] - tw - 2 * pad))
    cv2.rectangle(img, (x0, top), (x0 + tw + 2 * pad, top + tht + base + 2 * pad), colour, -1)
    put_text(img, text, (x0 + pad, top + pad + tht), fs, (20, 20, 20), th)


def draw_detections(img: np.ndarray, dets: Detections, cfg: OverlayConfig, s: float, show_ids: bool = False) -> None:
    attn = dets.attn if cfg.attention_kind == "rollout" or dets.attn_last is None else dets.attn_last
    if cfg.attention and attn is not None:
        for box, a in zip(dets.boxes, attn):
            heatmap_tint(img, box, a, cfg.heat_strength)
    lw = max(1, int(round(2 * s)))
    for i, (box, digit, conf) in enumerate(zip(dets.boxes, dets.digits, dets.confidence)):
        colour = conf_colour(float(conf))
        x, y, w, h = (int(v) for v in box)
        if cfg.boxes:
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, lw, cv2.LINE_AA)
        if cfg.labels:
            text = f"{int(digit)} {100 * float(conf):.0f}%"
            if show_ids and dets.track_ids is not None:
                text += f" #{int(dets.track_ids[i])}"
            draw_label(img, box, text, colour, s)


def draw_numbers(img: np.ndarray, lines: list[str], s: float) -> None:
    """The numbers read, one text line per line of writing, in a panel at the top right."""
    if not lines:
        return
    fs, th = 0.8 * s, max(1, int(round(1.6 * s)))
    shown = lines[:6] + ([f"... {len(lines) - 6} more lines"] if len(lines) > 6 else [])
    lh = int(round(34 * s))
    pad = int(round(10 * s))
    title_h = int(round(22 * s))
    width = max(max(cv2.getTextSize(t, FONT, fs, th)[0][0] for t in shown), int(130 * s)) + 2 * pad
    x0 = img.shape[1] - width - pad
    shade(img, x0, pad, x0 + width, pad + title_h + lh * len(shown) + pad, 0.65)
    put_text(img, "numbers read", (x0 + pad, pad + int(round(17 * s))), 0.5 * s, (200, 200, 200), 1)
    for i, t in enumerate(shown):
        put_text(img, t, (x0 + pad, pad + title_h + lh * (i + 1) - int(round(8 * s))), fs, (120, 255, 140), th)


def draw_inset(img: np.ndarray, dets: Detections, s: float) -> None:
    """The 28x28 crops the model actually sees, enlarged, with the digit read from each."""
    if dets.crops is None or len(dets) == 0:
        return
    cell = max(28, int(round(56 * s)))
    gap = max(2, int(round(4 * s)))
    label_h = int(round(20 * s))
    pad = int(round(10 * s))
    n = min(len(dets), (img.shape[1] // 2 - pad) // (cell + gap))
    title = "model input 28x28"
    title_w = cv2.getTextSize(title, FONT, 0.45 * s, 1)[0][0]
    width = max(n * (cell + gap), title_w + gap) + gap  # the title fits even over one crop
    x0 = img.shape[1] - width - pad
    title_h = int(round(20 * s))
    y0 = img.shape[0] - cell - label_h - title_h - 2 * gap - pad
    if n < 1 or y0 < img.shape[0] // 2:  # no room on a tiny frame
        return
    shade(img, x0, y0, x0 + width, img.shape[0] - pad, 0.7)
    put_text(img, title, (x0 + gap, y0 + int(round(15 * s))), 0.45 * s, (200, 200, 200), 1)
    for i in range(n):  # detections come in reading order
        cx = x0 + gap + i * (cell + gap)
        cy = y0 + title_h + gap
        crop = cv2.resize(dets.crops[i], (cell, cell), interpolation=cv2.INTER_NEAREST)
        img[cy:cy + cell, cx:cx + cell] = crop[..., None]
        cv2.rectangle(img, (cx, cy), (cx + cell - 1, cy + cell - 1), (90, 90, 90), 1)
        t = str(int(dets.digits[i]))
        put_text(img, t, (cx + cell // 2 - int(6 * s), cy + cell + label_h - int(4 * s)), 0.55 * s,
                 conf_colour(float(dets.confidence[i])), 1)


def draw_hud(img: np.ndarray, hud: HudInfo, n_digits: int, s: float) -> None:
    """Top-left panel: FPS and per-stage latency, device and model, recording and pause state."""
    t = hud.timings
    stages = "  ".join(f"{k} {t[k]:.1f}" for k in ("detect", "preprocess", "model", "draw") if k in t)
    lines = [(f"FPS {hud.fps:5.1f}   {stages} ms" if stages else f"FPS {hud.fps:5.1f}", WHITE),
             (f"{hud.device}  |  {hud.model}  |  {n_digits} digit{'s' if n_digits != 1 else ''}", WHITE)]
    if hud.recording:
        lines.append((f"REC  {hud.recording}", RED))
    if hud.paused:
        lines.append(("PAUSED  (space to resume)", (40, 200, 240)))
    fs = 0.5 * s
    lh = int(round(22 * s))
    pad = int(round(8 * s))
    width = max(cv2.getTextSize(text, FONT, fs, 1)[0][0] for text, _ in lines) + 2 * pad
    shade(img, 0, 0, width + pad, lh * len(lines) + 2 * pad, 0.6)
    for i, (text, colour) in enumerate(lines):
        y = pad + lh * (i + 1) - int(round(6 * s))
        if colour == RED:  # a recording dot before the file name
            cv2.circle(img, (pad + int(round(5 * s)), y - int(round(5 * s))), max(2, int(round(5 * s))), RED, -1,
                       cv2.LINE_AA)
            text = "    " + text[5:]
        put_text(img, text, (pad, y), fs, colour, 1)


def draw_status(img: np.ndarray, text: str, s: float) -> None:
    fs, th = 0.65 * s, max(1, int(round(1.5 * s)))
    (tw, tht), base = cv2.getTextSize(text, FONT, fs, th)
    pad = int(round(8 * s))
    x = (img.shape[1] - tw) // 2
    y = int(round(60 * s))
    shade(img, x - pad, y - tht - pad, x + tw + pad, y + base + pad, 0.65)
    put_text(img, text, (x, y), fs, WHITE, th)


def draw_help(img: np.ndarray, s: float) -> None:
    fs, th = 0.6 * s, 1
    lh = int(round(30 * s))
    pad = int(round(16 * s))
    key_w = int(round(110 * s))
    width = key_w + max(cv2.getTextSize(d, FONT, fs, th)[0][0] for _, d in HELP_LINES) + 2 * pad
    height = lh * (len(HELP_LINES) + 1) + 2 * pad
    x0 = max(0, (img.shape[1] - width) // 2)
    y0 = max(0, (img.shape[0] - height) // 2)
    shade(img, x0, y0, x0 + width, y0 + height, 0.75)
    put_text(img, "keys", (x0 + pad, y0 + pad + int(20 * s)), 0.7 * s, (40, 200, 240), max(1, int(round(1.5 * s))))
    for i, (k, d) in enumerate(HELP_LINES):
        y = y0 + pad + lh * (i + 2) - int(8 * s)
        put_text(img, k, (x0 + pad, y), fs, (120, 255, 140), th)
        put_text(img, d, (x0 + pad + key_w, y), fs, WHITE, th)


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
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Frame (H, W, 3) BGR uint8 + readings -> a new annotated BGR uint8 image of the same size.

    dets: the digits to show (boxes in frame pixels); lines: the numbers read, one string per
    line of writing (numbers separated by spaces); mask: the
    detector's threshold mask (any size, for the debug view); rejected: low-confidence candidates.
    """
    s = ui_scale(frame)
    if cfg.debug:
        img = debug_view(frame, mask, dets, rejected, s)
        draw_detections(img, dets, OverlayConfig(attention=False), s, show_ids=True)
    else:
        img = frame.copy()
        draw_detections(img, dets, cfg, s)
    if cfg.numbers:
        draw_numbers(img, lines, s)
    if cfg.inset:
        draw_inset(img, dets, s)
    if cfg.hud and hud is not None:
        draw_hud(img, hud, len(dets), s)
    if hud is not None and hud.status:
        draw_status(img, hud.status, s)
    if cfg.help:
        draw_help(img, s)
    return img
