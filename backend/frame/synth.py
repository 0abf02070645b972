"""Synthetic camera frames of handwritten digits, with known boxes and labels.

MNIST test digits are written onto a sheet (paper of some colour and texture, ink of some
colour and stroke weight, digits grouped into numbers and lines at several sizes), the sheet is
laid on a table under a perspective, lit unevenly with a shadow, then blurred, given sensor
noise and JPEG-compressed like a webcam frame. A fixed seed gives the same frames every time.

`DemoScene` is the same sheet gently moving in front of a still camera, for a camera-free demo.
`pipeline_crops` turns scenes into (28x28 crop, label) pairs that went through the real
detection and preprocessing, for fine-tuning the model on what it sees at run time (drawn from
MNIST's training images, so the test set stays unseen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from backend.errors import UserError
from backend.frame.detect import DetectConfig, find_candidates
from backend.frame.detections import box_iou
from backend.frame.mnist import mnist_arrays
from backend.frame.preprocess import PreprocessConfig, candidates_to_mnist

# Colours are BGR.
PAPERS = [(245, 245, 245), (232, 236, 240), (200, 225, 240), (215, 215, 210), (235, 225, 205),
          (190, 200, 205), (225, 240, 250), (170, 175, 180)]
INKS = [(25, 25, 25), (110, 40, 20), (140, 60, 30), (60, 60, 70), (40, 30, 140), (90, 90, 90)]
BOARDS = [(40, 60, 40), (35, 35, 35), (60, 50, 40)]  # chalkboards: light ink on these
CHALKS = [(235, 235, 235), (200, 220, 230), (215, 215, 200)]
TABLES = [(40, 60, 90), (70, 90, 120), (30, 30, 30), (120, 120, 120), (60, 45, 35)]


@dataclass
class SceneConfig:
    width: int = 640  # frame size in pixels
    height: int = 480
    min_digits: int = 3  # digits per scene (fewer when they do not fit)
    max_digits: int = 10
    min_height: int = 22  # digit ink height in sheet pixels
    max_height: int = 120
    closeup_p: float = 0.1  # chance of a single digit filling a large part of the frame
    light_on_dark_p: float = 0.15  # chance of chalk on a board instead of ink on paper
    table_p: float = 0.5  # chance that the sheet is smaller than the frame and a table shows
    perspective: float = 0.05  # corner jitter as a fraction of the frame size
    shadow_p: float = 0.6  # chance of a soft-edged shadow across the sheet
    ruled_p: float = 0.15  # chance of ruled (lined) paper: faint lines that cross the digits
    gradient: float = 0.35  # strength of the uneven light (0 = flat)
    blur_max: float = 1.2  # Gaussian blur sigma upper bound (focus, motion)
    noise_max: float = 6.0  # sensor noise sigma upper bound, in grey levels
    jpeg_quality: tuple[int, int] = (55, 95)  # JPEG quality range


def digit_heights(w: int, h: int, n: int) -> tuple[int, int]:
    """(min, max) ink height in pixels for `n` digits to fit a w x h sheet: half the side of each
    digit's share of the frame, at most a quarter of the frame's height (200 digits at 1280x720:
    22-34 px; at 640x480: 13-20 px)."""
    hi = round(min(0.25 * h, 0.5 * np.sqrt(w * h / n)))
    return round(0.65 * hi), hi


def page_config(w: int, h: int, n: int) -> SceneConfig:
    """A w x h frame filled by a page of `n` digits (fewer where they do not fit), no close-up."""
    lo, hi = digit_heights(w, h, n)
    return SceneConfig(width=w, height=h, min_digits=n, max_digits=n, min_height=lo, max_height=hi, closeup_p=0.0)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    boxes: np.ndarray  # (N, 4) int32 x, y, w, h: tight box of each digit's ink in frame pixels
    labels: np.ndarray  # (N,) int64 digit of each box
    lines: list[list[list[int]]] = field(default_factory=list)  # lines -> numbers -> box indices, reading order

    @property
    def text(self) -> str:
        """The expected reading: numbers separated by spaces, lines by '/'."""
        return "/".join(" ".join("".join(str(self.labels[i]) for i in num) for num in line) for line in self.lines)


DEMO_DIGITS = Path(__file__).resolve().parents[2] / "artifacts" / "demo_digits.npz"


def demo_digits(path: str | Path = DEMO_DIGITS) -> tuple[np.ndarray, np.ndarray]:
    """The few hundred MNIST test digits shipped for the demo scene, so it needs no download
    (artifacts/DATA.md): images (N, 28, 28) uint8 white on black, labels (N,) int64."""
    try:
        with np.load(path) as z:
            return z["images"], z["labels"].astype(np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"cannot read the demo digits {path}: {e}") from None


def _ink_alpha(img28: np.ndarray, height: int, weight: float) -> np.ndarray:
    """MNIST digit -> ink coverage in [0, 1] float32, tight to its ink, `height` pixels tall.

    weight in [0, 1]: 0 a thin ballpoint line, 1 a bold marker (the level the upscaled grey
    strokes are cut at).
    """
    ys, xs = np.nonzero(img28 > 40)
    d = img28[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255.0
    s = height / d.shape[0]
    w = max(2, round(d.shape[1] * s))
    big = cv2.resize(d, (w, height), interpolation=cv2.INTER_CUBIC)
    cut = 0.75 - 0.5 * weight
    soft = max(0.06, 0.6 / max(height / 20, 1.0))  # about one pixel of anti-aliasing
    return np.clip((big - cut) / soft + 0.5, 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int, amp: float) -> np.ndarray:
    """Low-frequency blotches plus fine grain, float32 around 0, `amp` grey levels."""
    lo = cv2.resize(rng.normal(0, 1, (max(2, h // 60), max(2, w // 60))).astype(np.float32), (w, h),
                    interpolation=cv2.INTER_CUBIC)
    return amp * (0.7 * lo + 0.3 * rng.normal(0, 1, (h, w)).astype(np.float32))


def _render_sheet(rng: np.random.Generator, cfg: SceneConfig, images: np.ndarray, labels: np.ndarray,
                  light_on_dark: bool) -> tuple[np.ndarray, list, list, list]:
    """Sheet image (H, W, 3) float32; per digit its label and ink points (K, 2) in sheet pixels;
    and the lines -> numbers -> digit indices in reading order."""
    W, H = cfg.width, cfg.height
    if light_on_dark:
        paper = np.array(BOARDS[rng.integers(len(BOARDS))], np.float32)
        ink = np.array(CHALKS[rng.integers(len(CHALKS))], np.float32)
    else:
        paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float32)
        ink = np.array(INKS[rng.integers(len(INKS))], np.float32)
    paper = paper + rng.normal(0, 6, 3).astype(np.float32)
    sheet = np.empty((H, W, 3), np.float32)
    sheet[:] = paper
    sheet += _texture(rng, H, W, float(rng.uniform(1, 5)))[..., None]
    if not light_on_dark and rng.random() < cfg.ruled_p:
        gap = int(rng.uniform(0.06, 0.12) * H)
        rule = np.float32((200, 170, 140)) * rng.uniform(0.85, 1.0)  # faint blue
        for y in range(int(rng.uniform(0.05, 0.1) * H), H, gap):
            cv2.line(sheet, (0, y), (W - 1, y), rule.tolist(), int(rng.integers(1, 3)), cv2.LINE_AA)
    weight = float(rng.uniform(0, 1))
    n_want = int(rng.integers(cfg.min_digits, cfg.max_digits + 1))
    mx, my = int(0.1 * W), int(0.1 * H)
    closeup = n_want > 0 and rng.random() < cfg.closeup_p
    digit_labels, points, lines = [], [], []
    y = my
    while len(digit_labels) < n_want:
        if closeup:
            h = int(rng.uniform(0.4, 0.7) * H)
            y = int(rng.uniform(my, H - my - h))
        else:
            h = int(rng.uniform(cfg.min_height, min(cfg.max_height, (H - 2 * my) / 2)))
        if y + h > H - my:
            break
        x = mx + int(rng.uniform(0, 0.1) * W)
        line, num = [], []
        while len(digit_labels) < n_want:
            i = int(rng.integers(len(images)))
            a = _ink_alpha(images[i], h, float(np.clip(weight + rng.normal(0, 0.1), 0, 1)))
            a *= float(rng.uniform(0.8, 1.0))  # ink is never quite opaque
            hh, ww = a.shape
            if closeup:
                x = int(rng.uniform(mx, max(mx + 1, W - mx - ww)))
            if x + ww > W - mx:
                break
            roi = sheet[y:y + hh, x:x + ww]
            roi += a[..., None] * (ink - roi)
            ys, xs = np.nonzero(a > 0.5)
            if not len(xs):  # a faint thin digit written small: where its ink is darkest
                ys, xs = np.nonzero(a >= a.max())
            num.append(len(digit_labels))
            digit_labels.append(int(labels[i]))
            points.append(np.stack([xs + x, ys + y], 1).astype(np.float32))
            if closeup:
                break
            if len(num) >= 4 or rng.random() < 0.3:  # end of a number
                line.append(num)
                num = []
                x += ww + int(h * rng.uniform(0.6, 1.2))
            else:
                x += ww + int(h * rng.uniform(0.12, 0.35))
        if num:
            line.append(num)
        if line:
            lines.append(line)
        if closeup or not line:
            break
        y += int(h * rng.uniform(1.45, 2.0))
    return sheet, digit_labels, points, lines


def _lighting(rng: np.random.Generator, cfg: SceneConfig) -> np.ndarray:
    """Multiplicative light field (H, W) float32: a gradient, a vignette and maybe a shadow."""
    W, H = cfg.width, cfg.height
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    g = (np.cos(ang) * xx / W + np.sin(ang) * yy / H)
    light = 1.0 - cfg.gradient * rng.uniform(0.2, 1.0) * (g - g.min()) / max(np.ptp(g), 1e-6)
    r2 = ((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2
    light *= 1.0 - rng.uniform(0, 0.4) * r2
    if rng.random() < cfg.shadow_p:
        # The soft edge of a hand or a head between the lamp and the sheet.
        a2 = rng.uniform(0, 2 * math.pi)
        d = np.cos(a2) * (xx - rng.uniform(0, W)) + np.sin(a2) * (yy - rng.uniform(0, H))
        edge = 1 / (1 + np.exp(-d / rng.uniform(8, 40)))
        light *= 1.0 - rng.uniform(0.2, 0.5) * edge
    return light


def render_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
                 cfg: SceneConfig | None = None) -> Scene:
    """One synthetic frame drawn with `rng` from the digit `images` (N, 28, 28) uint8 and `labels`."""
    cfg = cfg or SceneConfig()
    W, H = cfg.width, cfg.height
    light_on_dark = rng.random() < cfg.light_on_dark_p
    sheet, digit_labels, points, lines = _render_sheet(rng, cfg, images, labels, light_on_dark)

    # Where the sheet's corners land in the frame: a full-frame sheet or one lying on a table.
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    if rng.random() < cfg.table_p and not light_on_dark:
        s = rng.uniform(0.8, 0.95)
        ox, oy = rng.uniform(0, (1 - s) * W), rng.uniform(0, (1 - s) * H)
        dst = src * s + np.float32([ox, oy])
    else:
        dst = (src - [W / 2, H / 2]) * 1.08 + [W / 2, H / 2]  # paper beyond the frame edges
    dst = (dst + rng.uniform(-cfg.perspective, cfg.perspective, (4, 2)) * [W, H]).astype(np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    table = np.empty((H, W, 3), np.float32)
    table[:] = np.array(TABLES[rng.integers(len(TABLES))], np.float32)
    table += _texture(rng, H, W, 12)[..., None]
    frame = cv2.warpPerspective(sheet, M, (W, H), dst=table, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_TRANSPARENT)
    frame *= _lighting(rng, cfg)[..., None]
    sigma = rng.uniform(0, cfg.blur_max)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    frame += rng.normal(0, rng.uniform(0.5, cfg.noise_max), frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*cfg.jpeg_quality))])
    frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)

    boxes = np.zeros((len(points), 4), np.int32)
    for k, p in enumerate(points):
        q = cv2.perspectiveTransform(p[None], M)[0]
        x0, y0 = np.floor(q.min(0)).astype(int)
        x1, y1 = np.ceil(q.max(0)).astype(int)
        boxes[k] = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return Scene(frame, boxes, np.array(digit_labels, np.int64), lines)


def scenes(n: int, seed: int = 0, cfg: SceneConfig | None = None, data_dir: str | None = None,
           digits: tuple[np.ndarray, np.ndarray] | None = None) -> Iterator[Scene]:
    """`n` scenes, the same ones for the same seed. `digits` overrides loading MNIST test."""
    images, labels = digits if digits is not None else mnist_arrays(data_dir)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield render_scene(rng, images, labels, cfg)


def blank_scene(rng: np.random.Generator, cfg: SceneConfig | None = None, kind: str = "paper") -> np.ndarray:
    """A frame with no digit in it: 'paper' (a blank sheet, maybe ruled, maybe on a table),
    'plain' (a flat or gradient wall: no rules, table or shadow) or 'noise' (sensor noise only).
    (H, W, 3) uint8 BGR."""
    cfg = cfg or SceneConfig()
    if kind == "noise":
        return rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
    no_digits = (np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.int64))
    c = replace(cfg, min_digits=0, max_digits=0)
    if kind == "plain":
        c = replace(c, table_p=0.0, shadow_p=0.0, ruled_p=0.0)
    return render_scene(rng, *no_digits, c).image


def pipeline_crops(n_scenes: int, seed: int = 0, data_dir: str | None = None, train: bool = True,
                   cfg: SceneConfig | None = None, detect_cfg: DetectConfig | None = None,
                   preprocess_cfg: PreprocessConfig | None = None, min_iou: float = 0.5,
                   digits: tuple[np.ndarray, np.ndarray] | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """(crop (28, 28) uint8 white on black, label) for every digit of `n_scenes` synthetic scenes
    that detection found (IoU >= min_iou with its true box), after the very preprocessing used at
    run time: what the model sees from a camera, with the right answer.

    Digits come from MNIST's training images by default, so fine-tuning on these crops never
    sees the test set that accuracy is reported on; `digits` (images, labels) read once stand in
    for them.
    """
    images, labels = digits if digits is not None else mnist_arrays(data_dir, train=train)
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(seed)
    for _ in range(n_scenes):
        scene = render_scene(rng, images, labels, cfg)
        cand = find_candidates(scene.image, detect_cfg)
        if len(cand.boxes) == 0 or len(scene.boxes) == 0:
            continue
        crops = candidates_to_mnist(cand, preprocess_cfg)
        iou = box_iou(cand.boxes, scene.boxes)  # (candidates, truths)
        best = iou.argmax(1)
        for i in range(len(crops)):
            if iou[i, best[i]] >= min_iou:
                yield crops[i], int(scene.labels[best[i]])


class DemoScene:
    """A sheet of handwritten digits moving gently in front of a still camera.

    `next_frame()` returns the next (H, W, 3) uint8 BGR frame; the motion is a slow sway and
    tilt, the light and sensor noise change from frame to frame as they do on a webcam.
    """

    TEXT = ["2024", "31 415", "8 67 90"]

    def __init__(self, data_dir: str | None = None, size: tuple[int, int] = (640, 480), seed: int = 0,
                 digits: tuple[np.ndarray, np.ndarray] | None = None):
        self.width, self.height = size
        self.rng = np.random.default_rng(seed)
        self.t = 0
        if digits is None:  # MNIST test digits from data_dir, else the shipped ones
            digits = mnist_arrays(data_dir) if data_dir else demo_digits()
        self.sheet = self._sheet(*digits)
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        self.light = (1.0 - 0.25 * xx / self.width - 0.1 * yy / self.height)[..., None]

    def _sheet(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        W, H = self.width, self.height
        sheet = np.empty((H, W, 3), np.float32)
        sheet[:] = (238, 242, 245)
        sheet += _texture(self.rng, H, W, 3)[..., None]
        ink = np.float32([110, 40, 25])
        h = int(0.16 * H)
        y = int(0.12 * H)
        for line in self.TEXT:
            x = int(0.12 * W)
            for ch in line:
                if ch == " ":
                    x += int(0.6 * h)
                    continue
                pick = np.flatnonzero(labels == int(ch))
                a = _ink_alpha(images[self.rng.choice(pick)], h, 0.6) * 0.95
                hh, ww = a.shape
                ww = min(ww, W - x)
                roi = sheet[y:y + hh, x:x + ww]
                roi += a[:, :ww, None] * (ink - roi)
                x += ww + int(0.25 * h)
            y += int(1.6 * h)
        return sheet

    def next_frame(self) -> np.ndarray:
        W, H = self.width, self.height
        t = self.t / 30.0  # seconds at 30 frames per second
        self.t += 1
        angle = 3.0 * math.sin(0.7 * t)
        scale = 0.92 + 0.03 * math.sin(0.5 * t + 1.0)
        M = cv2.getRotationMatrix2D((W / 2, H / 2), angle, scale)
        M[:, 2] += (0.04 * W * math.sin(0.9 * t), 0.03 * H * math.sin(0.6 * t + 0.5))
        frame = cv2.warpAffine(self.sheet, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(60, 75, 95))
        frame *= self.light * (1.0 + 0.02 * math.sin(2.0 * t))
        frame += self.rng.normal(0, 2.5, frame.shape).astype(np.float32)
        return np.clip(frame, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    """`python -m backend.frame.synth --scenes 3000 --out crops.npz`: fine-tuning digits for
    `main.py --train --init CKPT --extra-data crops.npz`, cut from synthetic scenes of MNIST
    training digits by the run-time detection and preprocessing."""
    import argparse
    import sys

    from backend.errors import UserError

    p = argparse.ArgumentParser(prog="python -m backend.frame.synth", description=main.__doc__)
    p.add_argument("--scenes", type=int, default=3000, help="scenes to render (about 6 digits each)")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--data-dir", default=None, help="MNIST root (default: $DIGITS_DATA_DIR)")
    p.add_argument("--pages", type=int, default=0,
                   help="also this many 640x480 pages of 200 digits 13-20 px tall (a whole page in view)")
    p.add_argument("--out", required=True, help="output .npz with images (N, 28, 28) uint8 and labels (N,)")
    args = p.parse_args(argv)
    try:
        digits = mnist_arrays(args.data_dir, train=True)
        pairs = list(pipeline_crops(args.scenes, args.seed, digits=digits))
        pairs += list(pipeline_crops(args.pages, args.seed + 1, cfg=page_config(640, 480, 200), digits=digits))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    images = np.stack([c for c, _ in pairs]) if pairs else np.zeros((0, 28, 28), np.uint8)
    labels = np.array([label for _, label in pairs], np.int64)
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"{len(labels)} crops from {args.scenes} scenes and {args.pages} pages -> {args.out}; per digit {np.bincount(labels, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
