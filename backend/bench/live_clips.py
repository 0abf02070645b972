"""Hard live clips: real handwriting on moving paper, with known boxes and labels in every frame.

The digits are cut out of the development photos (`../shared/realworld`, other writers than
MNIST's) by the run-time detector: a photo is used only when the detector finds as many candidates
as its label has digits, and the label is read onto them in reading order (`contact_sheet` shows
every cut digit with its label, to check by eye). Each clip writes some of them as numbers on a
sheet of paper and films it with a hand-held camera: drift, shake, tilt and zoom, motion blur,
focus hunting, light that changes and a shadow passing, sensor noise and JPEG; faint or thin
strokes, a finger that covers a digit for a few frames, a digit rewritten in place, a digit written
anew. Everything is drawn from a seed, so the clips are the same on every run; nothing is stored.

  python -m backend.bench.live_clips --sheet cut_digits.png --clip 7 --out clip7.mp4
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from backend.errors import UserError
from backend.frame.detect import DetectConfig, find_candidates, stroke_width
from backend.frame.reading import reading_order

REALWORLD = Path(__file__).resolve().parents[3] / "shared" / "realworld"  # the development photos, beside the project
SIZE = (640, 480)  # frame width, height
FRAMES = 60
PENS = [(30, 30, 30), (120, 50, 25), (85, 85, 85), (45, 40, 170)]  # BGR: black, blue, pencil, red
PAPERS = [(242, 244, 245), (225, 235, 240), (215, 220, 220), (200, 225, 240)]
TABLE = (70, 95, 125)
SKIN = (125, 160, 215)
# What each of the 12 clips stresses, on top of a little of everything.
KINDS = ("handheld", "shake", "tilt-zoom", "focus", "light", "faint", "thin", "finger", "rewrite", "new-digit",
         "ruled-noisy", "everything")


@dataclass
class Glyph:
    """One real handwritten digit: ink coverage in [0, 1], tight to its ink."""

    alpha: np.ndarray  # (h, w) float32
    label: int
    source: str  # photo it was cut from

    @property
    def stroke(self) -> float:
        """Pen width in the glyph's pixels."""
        return stroke_width((self.alpha > 0.5).astype(np.uint8))

    def render(self, height: int, width: int, stroke: tuple[float, float]) -> np.ndarray:
        """Ink coverage (height, width) float32, the pen brought within `stroke` (min, max) pixels
        wide at that size: a photo's thin line shrunk to a few pixels would vanish otherwise."""
        s = height / self.alpha.shape[0]
        want = float(np.clip(self.stroke * s, *stroke)) / s
        r = int(round((want - self.stroke) / 2))
        a = cv2.copyMakeBorder(self.alpha, abs(r), abs(r), abs(r), abs(r), cv2.BORDER_CONSTANT, value=0)
        if r:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
            a = cv2.dilate(a, k) if r > 0 else cv2.erode(a, k)
        a = a[abs(r):a.shape[0] - abs(r), abs(r):a.shape[1] - abs(r)] if r < 0 else a
        return cv2.resize(a, (width, height), interpolation=cv2.INTER_AREA)


@dataclass
class Placed:
    """A glyph written on the sheet from frame `start` to `end` (exclusive)."""

    glyph: Glyph
    x: float  # top left on the sheet, sheet pixels
    y: float
    height: float  # sheet pixels
    contrast: float  # 1 = full pen, lower = faint
    start: int = 0
    end: int = 1 << 30
    line: int = 0

    @property
    def corners(self) -> np.ndarray:
        w = self.height * self.glyph.alpha.shape[1] / self.glyph.alpha.shape[0]
        return np.float32([[self.x, self.y], [self.x + w, self.y], [self.x + w, self.y + self.height],
                           [self.x, self.y + self.height]])


@dataclass
class Clip:
    """Frames (BGR uint8) and, per frame, the digits visible: boxes (N, 4) x, y, w, h and labels."""

    name: str
    frames: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # digits written anew or rewritten
    cut: int | None = None  # the frame another sheet comes in at, in a hard cut


def cut(first: Clip, then: Clip) -> Clip:
    """`first`'s frames, then a hard cut to `then`'s (another sheet in front of the camera; the
    writing events of neither)."""
    return Clip(f"{first.name}>{then.name}", first.frames + then.frames, first.boxes + then.boxes,
                first.labels + then.labels, cut=len(first.frames))


@dataclass
class Event:
    """A digit written at frame `frame` (`kind` "new" or "rewrite") with `label`; `boxes` (frames, 4)
    where it is in each frame (NaN before it is written)."""

    kind: str
    frame: int
    label: int
    boxes: np.ndarray
    index: int  # among the clip's placed digits


# --- cutting real digits out of photos -----------------------------------------------------------

def cut_digits(realworld: str | Path) -> list[Glyph]:
    """The digits of every photo in `realworld/labels.tsv` whose detected candidates match its label
    one to one (same count, same number of lines); '?' digits are skipped."""
    labels = Path(realworld) / "labels.tsv"
    if not labels.is_file():
        raise UserError(f"no {labels} (the photos' folder: --realworld DIR)")
    realworld, glyphs = labels.parent, []
    for row in labels.read_text().splitlines()[1:]:
        name, expected = row.split("\t")[:2]
        img = cv2.imread(str(realworld / "frames1280" / name))
        if img is None:
            continue
        cand = find_candidates(img, DetectConfig())
        label = expected.replace("/", "")
        reading = reading_order(cand.boxes)
        if len(cand.boxes) != len(label) or len(reading.lines) != expected.count("/") + 1:
            continue
        for k, i in enumerate(reading.order):
            if label[k] != "?":
                glyphs.append(Glyph(_alpha(cand, int(i)), int(label[k]), name))
    return glyphs


def _alpha(cand, i: int) -> np.ndarray:
    """Candidate i -> its ink coverage (h, w) float32 in [0, 1] at full resolution, its own ink only."""
    x, y, w, h = (int(v) for v in cand.boxes[i])
    gray = cand.gray[y:y + h, x:x + w].astype(np.float32)
    big = (cv2.resize(cand.masks[i], (w, h), interpolation=cv2.INTER_LINEAR) > 64).astype(np.uint8)
    r = max(1, round(h / 25))
    own = cv2.dilate(big, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    bh, bw = cand.background.shape
    paper = cv2.resize(cand.background, (cand.gray.shape[1], cand.gray.shape[0]),
                       interpolation=cv2.INTER_LINEAR)[y:y + h, x:x + w].astype(np.float32)
    ink = np.percentile(gray[big > 0], 5) if big.any() else gray.min()
    alpha = np.clip((paper - gray) / np.maximum(paper - ink, 20.0), 0, 1) * own
    return np.clip((alpha - 0.08) / 0.92, 0, 1).astype(np.float32)  # paper grain is not ink


def contact_sheet(glyphs: list[Glyph], cell: int = 56, cols: int = 30) -> np.ndarray:
    """Every glyph dark on white with its label in red, `cols` to a row: for checking by eye."""
    rows = math.ceil(len(glyphs) / cols)
    sheet = np.full((rows * cell, cols * cell, 3), 255, np.uint8)
    for k, g in enumerate(glyphs):
        s = (cell - 16) / max(g.alpha.shape)
        a = cv2.resize(g.alpha, (max(1, round(g.alpha.shape[1] * s)), max(1, round(g.alpha.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
        y0, x0 = (k // cols) * cell + 14, (k % cols) * cell + 2
        sheet[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = (255 * (1 - a))[..., None].astype(np.uint8)
        cv2.putText(sheet, str(g.label), (x0, y0 - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 220), 1, cv2.LINE_AA)
    return sheet


# --- making a clip -------------------------------------------------------------------------------

def _layout(rng: np.random.Generator, glyphs: list[Glyph], kind: str) -> tuple[list[Placed], float]:
    """Numbers in 1-3 lines on a sheet; returns the placed digits and the digit height."""
    h = float(rng.uniform(42, 64))
    # Faint: a light pencil or a pen running dry, still plain to a person (on "everything", less so).
    faint = {"faint": (0.4, 0.55), "everything": (0.55, 0.7)}.get(kind)
    placed, y = [], 0.0
    for line in range(int(rng.integers(1, 4))):
        x = float(rng.uniform(0, 1.5 * h))
        for _ in range(int(rng.integers(1, 3))):
            for _ in range(int(rng.integers(1, 5))):
                g = glyphs[int(rng.integers(len(glyphs)))]
                contrast = float(rng.uniform(*faint) if faint and rng.random() < 0.6 else rng.uniform(0.75, 1.0))
                hh = h * rng.uniform(0.85, 1.1)
                placed.append(Placed(g, x, y + rng.uniform(-0.08, 0.08) * h + (h - hh), hh, contrast, line=line))
                x += hh * g.alpha.shape[1] / g.alpha.shape[0] + rng.uniform(0.15, 0.35) * h
            x += rng.uniform(0.9, 1.4) * h
        y += rng.uniform(1.7, 2.1) * h
    return placed, h


def _sheet(placed: list[Placed], t: int, paper: np.ndarray, pen: np.ndarray, stroke: tuple[float, float]) -> np.ndarray:
    """The sheet at frame t: paper (H, W, 3) float32 with the digits written by then."""
    sheet = paper.copy()
    for p in placed:
        if not p.start <= t < p.end:
            continue
        c = p.corners
        w, h = int(round(c[1, 0] - c[0, 0])), int(round(p.height))
        a = p.glyph.render(max(h, 1), max(w, 1), stroke)
        x, y = int(round(p.x)), int(round(p.y))
        region = sheet[y:y + h, x:x + w]
        a = (a[:region.shape[0], :region.shape[1]] * p.contrast)[..., None]
        region[:] = region * (1 - a) + pen * a
    return sheet


def _finger(frame: np.ndarray, tip: np.ndarray, angle: float, width: float) -> None:
    """A finger from outside the frame to `tip`, in place: skin, shaded across, soft edge."""
    H, W = frame.shape[:2]
    d = np.array([math.cos(angle), math.sin(angle)])
    base = tip + d * (W + H)
    mask = np.zeros((H, W), np.float32)
    cv2.line(mask, tuple(int(v) for v in tip), tuple(int(v) for v in base), 1.0, int(width), cv2.LINE_AA)
    cv2.circle(mask, tuple(int(v) for v in tip), int(width / 2), 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0)[..., None]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    across = ((xx - tip[0]) * -d[1] + (yy - tip[1]) * d[0]) / (width / 2)
    skin = np.array(SKIN, np.float32) * (1.0 - 0.25 * np.clip(across, -1, 1) ** 2)[..., None]
    frame[:] = frame * (1 - mask) + skin * mask


@dataclass
class Camera:
    """A hand-held camera over the sheet: where the sheet lands in frame t (a homography)."""

    sheet_size: tuple[int, int]  # width, height
    scale: float  # frame pixels per sheet pixel
    drift: np.ndarray  # (2,) slow sway, frame pixels
    shake: np.ndarray  # (frames, 2) the hand's jitter, frame pixels
    periods: np.ndarray  # (2,) frames
    phase: np.ndarray  # (4,)
    tilt: float  # perspective, as a fraction of the frame
    zoom: float  # relative
    rotation: float  # degrees

    def pose(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(3, 3) sheet -> frame homography at frame t, and where the sheet's centre lands."""
        W, H = SIZE
        sw, sh = self.sheet_size
        wave = np.sin(2 * math.pi * t / self.periods + self.phase[:2])
        s = self.scale * (1 + self.zoom * wave[0])
        rot = math.radians(self.rotation * wave[1])
        centre = np.array([W / 2, H / 2]) + self.drift * np.sin(2 * math.pi * t / self.periods + self.phase[2:]) \
            + self.shake[t]
        A = np.array([[s * math.cos(rot), -s * math.sin(rot), 0], [s * math.sin(rot), s * math.cos(rot), 0], [0, 0, 1]])
        P = np.eye(3)
        P[2, 0] = self.tilt * math.sin(2 * math.pi * t / self.periods[1] + self.phase[3]) / W
        P[2, 1] = self.tilt * math.cos(2 * math.pi * t / self.periods[0] + self.phase[2]) / H
        M = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1]]) @ P @ A @ \
            np.array([[1, 0, -sw / 2], [0, 1, -sh / 2], [0, 0, 1]])
        return M / M[2, 2], centre


@dataclass
class Film:
    """What happens between the sheet and the picture: light, a finger, blur, noise, JPEG."""

    light: bool  # light that rises and falls, and a shadow sweeping across
    focus: bool  # the camera hunting for focus
    noise: float  # sensor noise, grey levels
    quality: int  # JPEG quality
    finger: tuple | None  # (digit covered, first frame, frames, angle, width)

    def photograph(self, sheet: np.ndarray, M: np.ndarray, moved: np.ndarray, t: int, frames: int,
                   rng: np.random.Generator) -> np.ndarray:
        """The sheet (H, W, 3) float32 seen through homography M -> a BGR uint8 frame; `moved`: the
        camera's movement since the last frame (motion blur)."""
        W, H = SIZE
        frame = np.empty((H, W, 3), np.float32)
        frame[:] = TABLE
        cv2.warpPerspective(sheet, M, (W, H), dst=frame, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        gain = 1.0
        if self.light:
            gain = 0.75 + 0.25 * math.sin(2 * math.pi * t / 30)
            band = (xx - (W * (t / frames * 1.6 - 0.3))) / 40.0  # a shadow sweeping across
            frame *= (1.0 - 0.35 / (1 + np.exp(-band)) * (1 / (1 + np.exp(band - 6))))[..., None]
        frame *= gain * (1.0 - 0.15 * ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W * W / 4))[..., None]
        if self.finger is not None and self.finger[1] <= t < self.finger[1] + self.finger[2]:
            digit, _, _, angle, width = self.finger
            tip = cv2.perspectiveTransform(digit.corners[None], M)[0].mean(0)
            _finger(frame, tip + [0, 0.3 * width], angle, width)
        v = moved * 0.6  # the shutter is open for 60 % of the frame
        n = int(min(np.hypot(*v), 12))
        if n >= 2:
            k = np.zeros((n * 2 + 1, n * 2 + 1), np.float32)
            cv2.line(k, (int(n - v[0] / 2), int(n - v[1] / 2)), (int(n + v[0] / 2), int(n + v[1] / 2)), 1.0, 1)
            frame = cv2.filter2D(frame, -1, k / k.sum())
        sigma = 1.8 * max(0.0, math.sin(2 * math.pi * t / 24)) if self.focus else 0.5
        if sigma > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        frame += rng.normal(0, self.noise, frame.shape).astype(np.float32)
        ok, buf = cv2.imencode(".jpg", np.clip(frame, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _events(rng: np.random.Generator, placed: list[Placed], glyphs: list[Glyph], kind: str, frames: int,
            h: float, right: float) -> list[tuple[str, int]]:
    """A digit rewritten in place, a digit written anew at the end of the first line (when it fits
    left of `right`) -> (kind, index in `placed`) of each digit written."""
    events = []
    if kind in ("rewrite", "everything"):
        p = placed[int(rng.integers(len(placed)))]
        t = int(rng.integers(frames // 3, frames // 2))
        others = [g for g in glyphs if g.label != p.glyph.label]
        placed.append(Placed(others[int(rng.integers(len(others)))], p.x, p.y, p.height, p.contrast, start=t,
                             line=p.line))
        p.end = t
        events.append(("rewrite", len(placed) - 1))
    if kind in ("new-digit", "everything"):
        last = max((p for p in placed if p.line == 0), key=lambda p: p.x)
        g = glyphs[int(rng.integers(len(glyphs)))]
        t = int(rng.integers(frames // 4, frames // 2))
        x = last.corners[1, 0] + 0.25 * h
        if x + h < right:
            placed.append(Placed(g, x, last.y, last.height, last.contrast, start=t, line=0))
            events.append(("new", len(placed) - 1))
    return events


def _paper(rng: np.random.Generator, size: tuple[int, int], ruled_from: float | None, h: float) -> np.ndarray:
    """Paper (height, width, 3) float32: a colour, blotches and grain, maybe blue rules."""
    sw, sh = size
    paper = np.empty((sh, sw, 3), np.float32)
    paper[:] = PAPERS[int(rng.integers(len(PAPERS)))]
    lo = cv2.resize(rng.normal(0, 1, (max(2, sh // 80), max(2, sw // 80))).astype(np.float32), (sw, sh),
                    interpolation=cv2.INTER_CUBIC)
    paper += (4 * lo + 2 * rng.normal(0, 1, (sh, sw)).astype(np.float32))[..., None]
    if ruled_from is not None:
        for y in np.arange(ruled_from, sh, rng.uniform(1.7, 2.1) * h):
            cv2.line(paper, (0, int(y)), (sw, int(y)), (210, 170, 140), 2, cv2.LINE_AA)
    return paper


def make_clip(glyphs: list[Glyph], index: int, steady: bool = False, frames: int = FRAMES, shake: float = 1.0) -> Clip:
    """Clip `index` (its kind is KINDS[index % 12]); `steady`: the same from a camera on a stand
    (no drift, shake, tilt or zoom); `shake` multiplies the hand's shake."""
    kind = KINDS[index % len(KINDS)]
    hard = kind == "everything"
    rng = np.random.default_rng(1000 * index)
    W, H = SIZE
    placed, h = _layout(rng, glyphs, kind)
    extent = np.array([p.corners.max(0) for p in placed]).max(0)  # the writing spans (0, 0) .. extent
    margin = 2.0 * h
    sw, sh = int(extent[0] + 2 * margin), int(extent[1] + 2 * margin)
    for p in placed:
        p.x, p.y = p.x + margin, p.y + margin
    clip = Clip(f"{index:02d}-{kind}" + ("-steady" if steady else ""))
    events = _events(rng, placed, glyphs, kind, frames, h, sw - margin / 2)
    paper = _paper(rng, (sw, sh), margin + h * 1.15 if kind == "ruled-noisy" or hard else None, h)
    pen = np.array(PENS[int(rng.integers(len(PENS)))], np.float32)
    stroke = {"thin": (1.0, 1.5), "everything": (1.5, 2.0)}.get(kind, (2.0, 5.0))  # pen width, sheet pixels

    # The writing centred, filling 60-75 % of the frame's width at most.
    scale = min(rng.uniform(0.6, 0.75) * W / (extent[0] + 1e-6), 0.6 * H / (extent[1] + 1e-6), 1.6)
    moving = 0.0 if steady else 1.0
    amp = {"shake": 3.0, "everything": 2.0}.get(kind, 1.0) * moving * shake
    drift = rng.uniform(8, 20, 2) * moving
    periods, phase = rng.uniform(40, 90, 2), rng.uniform(0, 2 * math.pi, 4)
    jitter = np.cumsum(rng.normal(0, 1.2 * amp, (frames, 2)), 0) * 0.5 + rng.normal(0, 1.0 * amp, (frames, 2))
    strong = kind == "tilt-zoom" or hard
    camera = Camera((sw, sh), scale, drift, jitter, periods, phase, (0.12 if strong else 0.04) * moving,
                    (0.12 if strong else 0.03) * moving, (4.0 if strong else 1.5) * moving)
    noisy = kind == "ruled-noisy" or hard
    film = Film(kind == "light" or hard, kind == "focus" or hard, rng.uniform(6, 10) if noisy else rng.uniform(2, 5),
                int(rng.integers(35, 50)) if noisy else int(rng.integers(60, 85)), None)
    if kind == "finger" or hard:
        film.finger = (placed[int(rng.integers(len(placed)))], int(rng.integers(frames // 4, frames // 2)),
                       int(rng.integers(3, 6)), rng.uniform(0.3, 1.2) + math.pi / 2, rng.uniform(0.9, 1.2) * h * scale)

    clip.events = [Event(e, placed[k].start, placed[k].glyph.label, np.full((frames, 4), np.nan, np.float32), k)
                   for e, k in events]
    sheets: dict[tuple, np.ndarray] = {}
    prev = None
    for t in range(frames):
        active = tuple(k for k, p in enumerate(placed) if p.start <= t < p.end)
        if active not in sheets:
            sheets[active] = _sheet(placed, t, paper, pen, stroke)
        M, centre = camera.pose(t)
        clip.frames.append(film.photograph(sheets[active], M, np.zeros(2) if prev is None else centre - prev, t,
                                           frames, rng))
        prev = centre
        corners = cv2.perspectiveTransform(np.array([placed[k].corners for k in active]).reshape(-1, 1, 2), M)
        corners = corners.reshape(-1, 4, 2)
        lo, hi = corners.min(1), corners.max(1)
        clip.boxes.append(np.hstack([lo, hi - lo]).astype(np.float32).reshape(-1, 4))
        clip.labels.append(np.array([placed[k].glyph.label for k in active], np.int64))
        for e in clip.events:
            if e.index in active:
                e.boxes[t] = clip.boxes[t][active.index(e.index)]
    return clip


def clips(realworld: str | Path, n: int = 12, steady: bool = False, frames: int = FRAMES,
          shake: float = 1.0) -> list[Clip]:
    glyphs = cut_digits(realworld)
    return [make_clip(glyphs, i, steady, frames, shake) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realworld", default=str(REALWORLD))
    p.add_argument("--sheet", default=None, help="write the contact sheet of the cut digits to this PNG")
    p.add_argument("--clip", type=int, default=None, help="write clip N (see KINDS) ...")
    p.add_argument("--steady", action="store_true", help="... the steady version")
    p.add_argument("--out", default="clip.mp4", help="... to this video, boxes and labels drawn")
    args = p.parse_args(argv)
    glyphs = cut_digits(args.realworld)
    print(f"{len(glyphs)} digits from {len({g.source for g in glyphs})} photos")
    if args.sheet:
        cv2.imwrite(args.sheet, contact_sheet(glyphs))
    if args.clip is not None:
        from backend.live.recorder import VideoRecorder

        clip = make_clip(glyphs, args.clip, args.steady)
        with VideoRecorder(args.out, fps=15) as vr:
            for f, b, l in zip(clip.frames, clip.boxes, clip.labels):
                f = f.copy()
                for (x, y, w, h), d in zip(b.astype(int), l):
                    cv2.rectangle(f, (x, y), (x + w, y + h), (0, 200, 0), 1)
                    cv2.putText(f, str(d), (x, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 160, 0), 1)
                vr.write(f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
