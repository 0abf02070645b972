"""What users photograph besides a few digits: whole pages, close-ups, crops, a straight '1'."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.bench.benchmark import score_frame
from backend.frame import synth
from backend.frame.detect import DetectConfig, find_candidates, maybe_two
from backend.frame.detections import box_iou
from backend.frame.pipeline import Pipeline, PipelineConfig
from backend.frame.preprocess import PreprocessConfig
from backend.frame.reading import reading_order
from backend.live.sources import DrawPad
from scenes import write_digit


def page(digits, seed: int, n: int = 200) -> synth.Scene:
    """A 1280x720 frame of a sheet holding n handwritten digits 20-30 px tall."""
    cfg = synth.SceneConfig(width=1280, height=720, min_digits=n, max_digits=n, min_height=22, max_height=34,
                            closeup_p=0.0, light_on_dark_p=0.0)
    return next(synth.scenes(1, seed, cfg, digits=digits))


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def tight(digit28: np.ndarray, size: int, margin: int = 0) -> np.ndarray:
    """An MNIST digit as dark ink on white, cut to its ink (plus margin px at 28 px) and scaled so
    its longer side is `size` pixels: it touches the picture's edges."""
    ys, xs = np.nonzero(digit28 > 127)
    d = 255 - digit28[max(0, ys.min() - margin):ys.max() + 1 + margin, max(0, xs.min() - margin):xs.max() + 1 + margin]
    s = size / max(d.shape)
    img = cv2.resize(d, (max(1, round(d.shape[1] * s)), max(1, round(d.shape[0] * s))), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.mark.slow
def test_a_page_of_200_digits_is_found_and_read(digits, shipped_pipeline):
    truth = found = errors = 0
    for seed in (0, 1):
        sc = page(digits, seed)
        assert len(sc.boxes) == 200
        r = shipped_pipeline.process(sc.image)
        truth += len(sc.boxes)
        found += int((box_iou(sc.boxes, find_candidates(sc.image).boxes).max(1) >= 0.5).sum())
        expected = "".join(str(sc.labels[i]) for line in sc.lines for num in line for i in num)
        errors += edit_distance("".join(r.numbers), expected)
    # Measured 391/400 found and 391/400 read (the misses: touching pairs such as "18" and faint
    # digits on dim paper); the goal is 99 %.
    assert found / truth >= 0.975, f"detection recall {found}/{truth}"
    assert 1 - errors / truth >= 0.975, f"reading {truth - errors}/{truth}"


def test_close_up_touching_all_four_edges_is_read(digits, shipped_pipeline):
    images, labels = digits
    read = 0
    for d in range(10):
        img = tight(images[np.flatnonzero(labels == d)[1]], 240)
        h, w = img.shape[:2]
        ink = np.flatnonzero((img[..., 0] < 200).any(0)), np.flatnonzero((img[..., 0] < 200).any(1))
        assert ink[0][0] == 0 and ink[0][-1] == w - 1 and ink[1][0] == 0 and ink[1][-1] == h - 1
        read += shipped_pipeline.process(img).numbers == [str(d)]
    assert read >= 9, f"{read}/10 close-ups read"


@pytest.mark.parametrize("size", [28, 64, 200])
def test_small_crops_of_one_digit_are_read(digits, shipped_pipeline, size):
    images, labels = digits
    pick = np.random.default_rng(size).choice(len(images), 30, replace=False)
    read = sum(shipped_pipeline.process(tight(images[i], size, margin=1)).numbers == [str(labels[i])] for i in pick)
    assert read >= 24, f"{read}/30 crops of {size} px read"


def small_loops(digits, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 640x480 page of 60 ballpoint 8s, 9s and 6s 12 px tall, out of focus: (frame, boxes, labels)."""
    images, labels = digits
    rng = np.random.default_rng(seed)
    pick = rng.permutation(np.flatnonzero(np.isin(labels, (6, 8, 9))))[:60]
    img = np.full((480, 640, 3), (225, 228, 230), np.float32)
    boxes = []
    for k, i in enumerate(pick):
        x, y = 40 + k % 15 * 38, 60 + k // 15 * 90
        boxes.append((x, y, write_digit(img, images[i], x, y, 12, 0.0), 12))
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), np.array(boxes), labels[pick]


def test_small_blurred_loops_stay_open(digits, shipped_pipeline):
    """Digits under 20 px tall: only their own ink level is full white, or their small loops fill
    (read with the cut of larger digits: 90 of 120 right, 99 with their own)."""
    cut_as_large = Pipeline(shipped_pipeline.recognizer, PipelineConfig(preprocess=PreprocessConfig(small_ink_hi=0.7)))
    pages = [small_loops(digits, seed) for seed in range(2)]
    right = [sum(score_frame(pipe.process(frame), (boxes, labels))[1] for frame, boxes, labels in pages)
             for pipe in (shipped_pipeline, cut_as_large)]
    assert right[0] >= right[1] + 4, right


def test_draw_pad_reads_a_plain_straight_one(shipped_pipeline):
    pad = DrawPad()
    pad.on_mouse(cv2.EVENT_LBUTTONDOWN, 480, 90, 0)
    for y in range(90, 460, 20):
        pad.on_mouse(cv2.EVENT_MOUSEMOVE, 480, y, 0)
    pad.on_mouse(cv2.EVENT_LBUTTONUP, 480, 460, 0)
    assert shipped_pipeline.process(pad.read()[1]).numbers == ["1"]


def close_up_without_digits(kind: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    img = np.full((240, 240, 3), (228, 232, 236), np.float32)
    img += cv2.GaussianBlur(rng.normal(0, 6, (240, 240)).astype(np.float32), (0, 0), 2)[..., None]
    img *= np.linspace(0.85, 1.0, 240, dtype=np.float32)[None, :, None]  # uneven light
    if kind == "fingertip":  # a fingertip over the bottom edge, skin colour, out of focus
        cv2.ellipse(img, (130, 230), (70, 110), 10, 0, 360, (110, 140, 185), -1)
        img = cv2.GaussianBlur(img, (0, 0), 4)
    elif kind == "line":  # a fine pen line across the frame, as fine as the close-up digits' below
        cv2.line(img, (-10, 60), (250, 200), (140, 40, 20), 3, cv2.LINE_AA)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["blank", "fingertip", "line"])
def test_close_up_of_no_digit_reads_nothing(shipped_pipeline, kind):
    assert shipped_pipeline.process(close_up_without_digits(kind)).numbers == []


def test_reading_order_follows_curved_lines():
    """Three lines of ten digits on a bent page: each line rises and falls by more than the
    spacing between lines, so sorting by height alone would mix them up."""
    boxes, expected = [], []
    for line in range(3):
        for k in range(10):
            x = 40 + 50 * k
            y = 100 + 60 * line + 45 * np.sin(k / 9 * np.pi)
            boxes.append((x, int(y), 30, 40))
            expected.append(line)
    r = reading_order(np.array(boxes), np.array([k % 10 for k in range(30)]))
    assert list(r.line) == expected
    assert r.numbers == ["0123456789"] * 3


# Fine-pen digits as strokes (polylines in a unit box, y down), for close-ups that fill the frame.
FINE_PEN = {"4": [[(0.35, 0.0), (0.0, 0.55), (0.75, 0.45)], [(0.7, 0.2), (0.75, 0.45), (0.8, 1.0)]],
            "7": [[(0.0, 0.05), (0.9, 0.0), (0.55, 0.5), (0.35, 1.0)]],
            "0": [[(0.5 + 0.45 * np.cos(t), 0.5 + 0.5 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]]}


def write(img: np.ndarray, digit: str, x: float, y: float, w: float, h: float, colour, thickness: int) -> None:
    """Draw a FINE_PEN digit in the box (x, y, w, h) of img."""
    for stroke in FINE_PEN[digit]:
        pts = np.array([(x + w * u, y + h * v) for u, v in stroke])
        cv2.polylines(img, [np.rint(pts).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)


@pytest.mark.parametrize("digit", sorted(FINE_PEN))
@pytest.mark.parametrize("frame_wh", [(320, 240), (240, 320)])
def test_fine_pen_close_up_filling_the_frame_is_read(shipped_pipeline, digit, frame_wh):
    """A ballpoint digit held up close: 0.96 of the frame tall (or as wide as a portrait frame
    allows), clear of its edges, its stroke 0.012 of its height (drawn at 4 times the size and
    shrunk, as a camera sees it)."""
    w, h = frame_wh
    img = np.full((4 * h, 4 * w, 3), (200, 205, 210), np.uint8)
    side = min(0.96 * h, 0.96 * w / 0.9)  # the 0 is 0.9 of its height wide
    x0, y0 = (w - 0.9 * side) / 2, (h - side) / 2
    write(img, digit, 4 * x0, 4 * y0, 4 * 0.9 * side, 4 * side, (140, 40, 20), round(4 * 0.012 * side))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    assert shipped_pipeline.process(img).numbers == [digit]


@pytest.mark.parametrize("digit", ["7", "4"])
def test_close_up_on_squared_paper_keeps_a_stroke_that_runs_along_a_grid_line(shipped_pipeline, digit):
    """A marker digit on squared paper, its bar lying on one of the grid's fine lines: the
    line goes, the bar stays (it is wider than the line)."""
    img = np.full((960, 960, 3), 215, np.uint8)
    for v in range(20, 960, 160):
        cv2.line(img, (v, 0), (v, 959), (165, 165, 165), 5)
        cv2.line(img, (0, v), (959, v), (165, 165, 165), 5)
    side = 600
    x0, y0 = 200, 340 - (0.05 if digit == "7" else 0.5) * side  # the bar on the line at y = 340
    write(img, digit, x0, y0, 0.9 * side, side, (40, 40, 40), 28)
    img = cv2.resize(img, (240, 240), interpolation=cv2.INTER_AREA)
    assert shipped_pipeline.process(img).numbers == [digit]


def test_a_speck_beside_a_close_up_digit_is_not_a_second_digit(shipped_pipeline):
    """A dash a twentieth of the digit's height beside a close-up (a grid line's stub, a fleck
    of ink) is left out, as it is among three or more digits."""
    img = np.full((240, 320, 3), 215, np.uint8)
    write(img, "7", 60, 30, 160, 180, (40, 40, 40), 9)
    cv2.line(img, (280, 100), (280, 109), (60, 60, 60), 2)
    assert shipped_pipeline.process(img).numbers == ["7"]


def test_touching_pair_in_a_row_is_read_as_two_digits_a_wide_zero_as_one(digits, shipped_pipeline):
    """A 1 leaning on an 8 is hardly wider than a wide 0: both come apart in two halves each as
    tall as the whole (detect.maybe_two); the pair's halves read as digits surer than it reads
    whole, the 0's do not."""
    from test_detect import sheet, stamp

    images, labels = digits

    def nth(d: int, k: int) -> np.ndarray:
        return images[np.flatnonzero(labels == d)[k]]

    def row(k: int) -> tuple[np.ndarray, int]:
        img, x = sheet(), 40
        for d in (2, 5, 3, 0, 6, 9):
            x += stamp(img, nth(d, k), x, 100, 50)[2] + 14
        return img, x

    img, x = row(2)
    one = stamp(img, nth(1, 2), x, 100, 50)
    stamp(img, nth(8, 2), x + one[2] - 3, 100, 50)  # their strokes touch: one piece of ink
    assert [len(b) for _, b, _ in maybe_two(find_candidates(img), np.arange(7), DetectConfig())] == [2]
    assert shipped_pipeline.process(img).numbers == ["25306918"]
    for k in (1, 2):
        img, x = row(k)
        stamp(img, cv2.resize(nth(0, k), (42, 28))[:, 7:35], x, 100, 50)  # a 0 half as wide again
        assert len(maybe_two(find_candidates(img), np.arange(7), DetectConfig())) == 1
        assert shipped_pipeline.process(img).numbers == ["2530690"]
