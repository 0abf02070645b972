"""Detection: every digit of a synthetic scene found, nothing found where there is no digit."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from backend.bench.live_clips import REALWORLD
from backend.frame import detect, synth
from backend.frame.detect import DetectConfig, _near_pairs, components, find_candidates, to_gray, work_scale
from backend.frame.lines import fit_line

PAPER = (235, 238, 240)


def sheet(h: int = 480, w: int = 640, value=PAPER) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = value
    return img


def stamp(img: np.ndarray, digit28: np.ndarray, x: int, y: int, height: int, ink=(30, 30, 30)) -> tuple[int, ...]:
    """Write an MNIST digit `height` pixels tall with its top-left ink at (x, y); its box (x, y, w, h)."""
    ys, xs = np.nonzero(digit28 > 40)
    d = digit28[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255
    w = max(2, round(d.shape[1] * height / d.shape[0]))
    a = np.clip(cv2.resize(d, (w, height), interpolation=cv2.INTER_CUBIC) * 1.5 - 0.25, 0, 1)[..., None]
    roi = img[y:y + height, x:x + w].astype(np.float32)
    img[y:y + height, x:x + w] = (roi + a * (np.float32(ink) - roi)).astype(np.uint8)
    return x, y, w, height


def pen(img: np.ndarray, digit28: np.ndarray, x: int, y: int, height: int, ink=(60, 60, 60)) -> tuple[int, ...]:
    """Write an MNIST digit `height` pixels tall as a thin ballpoint line at (x, y); its box."""
    a = synth._ink_alpha(digit28, height, 0.0)[..., None]
    h, w = a.shape[:2]
    img[y:y + h, x:x + w] = (img[y:y + h, x:x + w] * (1 - a) + a * np.float32(ink)).astype(np.uint8)
    return x, y, w, h


def first(digits, label: int) -> np.ndarray:
    images, labels = digits
    return images[np.flatnonzero(labels == label)[0]]


def matched(truth: np.ndarray, found: np.ndarray, min_iou: float = 0.5) -> int:
    if len(truth) == 0 or len(found) == 0:
        return 0
    return int((synth.box_iou(truth, found).max(1) >= min_iou).sum())


def squared_sheet(digits, step: int = 24, grey: int = 188) -> tuple[np.ndarray, np.ndarray]:
    """Three rows of eight digits 48 px tall on a grid of 1-px lines every `step` px, `grey` dark,
    which joins every digit into one piece of ink, lightly blurred: (frame, true boxes)."""
    img = sheet()
    for v in range(5, 640, step):
        cv2.line(img, (v, 0), (v, 479), (grey, grey, grey), 1)
        cv2.line(img, (0, v), (639, v), (grey, grey, grey), 1)
    truth = np.array([stamp(img, first(digits, (8 * r + i) % 10), 30 + 72 * i, 60 + 140 * r, 48, ink=(60, 40, 30))
                      for r in range(3) for i in range(8)])
    return cv2.GaussianBlur(img, (3, 3), 0), truth


def moved(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The picture moved by (dx, dy) pixels, parts of a pixel too, its edges repeated."""
    return cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def test_recall_on_synthetic_scenes(digits):
    truth = found = extra = 0
    for sc in synth.scenes(14, seed=2024, digits=digits):
        boxes = find_candidates(sc.image).boxes
        truth += len(sc.boxes)
        found += matched(sc.boxes, boxes)
        extra += len(boxes) - matched(boxes, sc.boxes)
    assert truth >= 50
    assert found / truth >= 0.99, f"recall {found}/{truth}"
    assert extra <= 0.03 * truth


@pytest.mark.parametrize("kind", ["paper", "plain", "noise"])
def test_nothing_on_frames_without_digits(kind):
    rng = np.random.default_rng(11)
    for _ in range(16):
        assert len(find_candidates(synth.blank_scene(rng, kind=kind)).boxes) == 0


def _non_digit_scenes() -> dict[str, np.ndarray]:
    table = sheet(value=(60, 80, 110))
    paper_on_table = table.copy()
    cv2.fillConvexPoly(paper_on_table, np.int32([[80, 40], [600, 60], [580, 470], [60, 440]]), PAPER)
    finger = sheet()
    cv2.ellipse(finger, (420, 330), (45, 110), 20, 0, 360, (120, 150, 190), -1)  # a fingertip, skin colour
    finger = cv2.GaussianBlur(finger, (0, 0), 3)
    lines = sheet()
    cv2.line(lines, (40, 100), (600, 110), (40, 40, 40), 2)  # a ruled line
    cv2.line(lines, (320, 20), (325, 460), (40, 40, 40), 1)  # a fold, a ruler's edge
    dots = sheet()
    rng = np.random.default_rng(0)
    for x, y in rng.integers(20, 460, (40, 2)):
        cv2.circle(dots, (int(x), int(y)), 1, (50, 50, 50), -1)
    border = sheet()
    cv2.rectangle(border, (0, 0), (639, 479), (20, 20, 20), 12)  # a dark frame around the picture
    shadow = sheet()
    shadow[:, 300:] = (shadow[:, 300:] * 0.55).astype(np.uint8)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 4)
    return {"paper_on_table": paper_on_table, "finger": finger, "lines": lines, "dots": dots,
            "border": border, "shadow_edge": shadow}


@pytest.mark.parametrize("name", list(_non_digit_scenes()))
def test_non_digits_rejected(name):
    assert len(find_candidates(_non_digit_scenes()[name]).boxes) == 0


@pytest.mark.parametrize("convert", [
    lambda f: f,
    lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA),
    lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY),
    lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None],
])
def test_colour_formats_give_the_same_boxes(digits, convert):
    sc = next(synth.scenes(1, seed=5, digits=digits))
    boxes = find_candidates(convert(sc.image)).boxes
    assert np.array_equal(boxes, find_candidates(sc.image).boxes)
    assert matched(sc.boxes, boxes) == len(sc.boxes)


def test_pieces_of_one_digit_become_one_box():
    img = sheet()
    # A 5 whose top bar does not touch its body.
    cv2.line(img, (110, 100), (160, 100), (30, 30, 30), 4)
    cv2.line(img, (112, 110), (110, 140), (30, 30, 30), 4)
    cv2.ellipse(img, (128, 165), (26, 28), 0, 200, 500, (30, 30, 30), 4)
    # A 4 in two strokes: an open angle and a separate vertical.
    cv2.polylines(img, [np.int32([[300, 95], [280, 160], [335, 160]])], False, (30, 30, 30), 4)
    cv2.line(img, (322, 110), (322, 200), (30, 30, 30), 4)
    boxes = find_candidates(img).boxes
    assert len(boxes) == 2
    x = sorted(boxes[:, 0])
    assert abs(x[0] - 100) < 15 and abs(x[1] - 278) < 10


def test_a_close_up_digit_in_many_pieces_is_one_box():
    """A 7 held close, written with a pen that skips (or its strokes cut by ruled lines taken
    out): its bar in three short pieces, its stroke down broken above its end. Most of its pieces
    are short, the stroke holds most of its ink: the digit's height is the stroke's, and the
    stroke and its end are one digit (grouped by the fragments' height, they were two)."""
    img = np.full((160, 160), 190, np.float32)
    for x0, x1 in ((28, 48), (56, 76), (84, 100)):
        cv2.line(img, (x0, 30), (x1, 30 + (x1 - x0) // 4), 40, 5)
    cv2.line(img, (108, 36), (82, 108), 40, 5)
    cv2.line(img, (80, 118), (75, 140), 40, 5)
    img = cv2.GaussianBlur(img, (0, 0), 0.8) + np.random.default_rng(0).normal(0, 2, img.shape)
    boxes = find_candidates(np.clip(img, 0, 255).astype(np.uint8)).boxes
    assert len(boxes) == 1 and boxes[0, 1] <= 30 and boxes[0, 1] + boxes[0, 3] >= 138


DIM_PAPER = (130, 132, 134)


def in_dim_light(img: np.ndarray, seed: int) -> np.ndarray:
    """A sheet of paper DIM_PAPER as a camera sees it in dim light: sensor noise of sigma 10."""
    return np.clip(img + np.random.default_rng(seed).normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def dim_row(digits, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A row of eight digits in dim light: ink 25 grey levels darker than the paper, so each
    pixel of a stroke is only 2.5 sigmas dark. (frame, true boxes)"""
    img = sheet(value=DIM_PAPER)
    truth = [stamp(img, first(digits, d), 40 + 72 * i, 200, 56, ink=(105, 105, 105))
             for i, d in enumerate((3, 1, 4, 7, 5, 9, 2, 6))]
    return in_dim_light(img, seed), np.array(truth)


def test_faint_digits_in_a_dim_noisy_frame_are_found(digits):
    """Smoothed before it is thresholded, every digit is found; thresholded pixel by pixel,
    hardly any."""
    frame, truth = dim_row(digits)
    boxes = find_candidates(frame).boxes
    assert matched(truth, boxes) == len(truth) == len(boxes)
    assert matched(truth, find_candidates(frame, DetectConfig(smooth_noise=np.inf)).boxes) <= 2


@pytest.mark.parametrize("seed", [0, 1])
def test_a_dim_page_whose_faint_rows_only_show_smoothed_is_read_whole(digits, seed):
    """Four rows of nine digits written firmly (40 grey levels dark) and two written faintly (22):
    thresholded pixel by pixel, the firm rows alone make a page of digits, and the faint ones are
    lost; smoothed, every digit is found."""
    img = sheet(value=DIM_PAPER)
    truth = np.array([stamp(img, first(digits, (9 * r + i) % 10), 30 + 66 * i, 16 + 76 * r, 48,
                            ink=(90, 90, 90) if r < 4 else (108, 108, 108)) for r in range(6) for i in range(9)])
    frame, faint = in_dim_light(img, seed), truth[36:]
    c = find_candidates(frame)
    assert c.polarity.smoothed and matched(truth, c.boxes) == len(truth) == len(c.boxes)
    assert matched(faint, find_candidates(frame, DetectConfig(smooth_noise=np.inf)).boxes) <= 3


@pytest.mark.parametrize("seed", [0, 1])
def test_faint_digits_on_paper_of_moderate_noise_are_read_smoothed(digits, seed):
    """A row of eight digits 16 grey levels darker than the paper, with sensor noise of sigma 2.5
    per channel: the paper's noise measures two steps of its histogram (3 grey levels), under
    which a stroke's pixels seldom reach the 8 sigmas that seed a piece of ink, and hardly any
    digit is found pixel by pixel (the noise was tried smoothed only from 4); smoothed, each is."""
    img = sheet(value=(130, 130, 130))
    truth = np.array([stamp(img, first(digits, d), 40 + 72 * i, 200, 56, ink=(114, 114, 114))
                      for i, d in enumerate((3, 1, 4, 7, 5, 9, 2, 6))])
    frame = np.clip(img + np.random.default_rng(seed).normal(0, 2.5, img.shape), 0, 255).astype(np.uint8)
    c = find_candidates(frame)
    assert c.polarity.smoothed and matched(truth, c.boxes) == len(truth) == len(c.boxes)
    assert matched(truth, find_candidates(frame, DetectConfig(smooth_noise=4.0)).boxes) <= 2


def test_a_noisy_video_is_thresholded_smoothed_without_deciding_again(digits, monkeypatch):
    thresholded = []
    real = detect._threshold_ink
    monkeypatch.setattr(detect, "_threshold_ink", lambda *a, **k: thresholded.append(a[3:4]) or real(*a, **k))
    polarity = None
    for seed in range(4):  # fresh sensor noise every frame
        frame, truth = dim_row(digits, seed)
        c = find_candidates(frame, DetectConfig(), polarity)
        polarity = c.polarity
        assert matched(truth, c.boxes) == len(truth) == len(c.boxes)
    assert thresholded == [(), (True,)] + [(True,)] * 3  # both ways once, then smoothed only
    assert polarity.smoothed


@pytest.mark.parametrize("rows", [1, 5])
def test_marks_a_third_of_a_pages_digit_height_are_specks(digits, rows):
    """Strokes 14 px tall beside digits 48 px tall: a '1' among a few digits, a speck (wood
    grain, a dot) beside a page of them, where one hand writes every digit at one size."""
    img = sheet()
    truth = np.array([stamp(img, first(digits, (9 * r + i) % 10), 30 + 64 * i, 20 + 76 * r, 48)
                      for r in range(rows) for i in range(9)])
    for y in (40, 200, 360):
        cv2.line(img, (622, y), (620, y + 10), (30, 30, 30), 3)
    boxes = find_candidates(img).boxes
    assert matched(truth, boxes) == len(truth)
    assert len(boxes) == len(truth) + (3 if rows == 1 else 0)


def test_digits_on_squared_paper_are_found(digits):
    """A grid of lines 50 grey levels dark every 24 px joins every digit on it into one piece of
    ink: its rows, then its columns, are taken out, and the digits found."""
    frame, truth = squared_sheet(digits)
    n, _ = cv2.connectedComponents((to_gray(frame) < 215).astype(np.uint8))
    assert n - 1 == 1  # one piece: the grid and every digit
    boxes = find_candidates(frame).boxes
    assert matched(truth, boxes) >= len(truth) - 1 and len(boxes) <= len(truth) + 2


@pytest.mark.parametrize("step, grey", [(16, 188), (24, 160)])
def test_squared_paper_moved_by_parts_of_a_pixel(digits, step, grey):
    """The squared sheet of the test above (its grid every 16 px, or darker every 24) moved by
    parts of a pixel, as a camera sees it: its rows and columns blur differently each time. Every
    digit is found in each of 8 positions. Where the search missed one row, its columns and every
    digit on them stayed one piece, which held no cell (one row closes none) and so was taken for
    a typical piece of ink: by its height nothing left was long, the columns were not searched
    for, and nothing was found; where a column at the frame's edge came apart from the grid, its
    height was the typical one, and no line was searched for at all."""
    frame, truth = squared_sheet(digits, step, grey)
    for t in range(8):
        dx, dy = 3 * np.sin(t), 3 * np.cos(t)
        boxes = find_candidates(moved(frame, dx, dy)).boxes
        assert matched(truth + [round(dx), round(dy), 0, 0], boxes) == len(boxes) == len(truth), t


def test_a_close_up_on_squared_paper_showing_a_few_cells(digits):
    """A digit held close on squared paper: two lines each way cross the picture, and the digit's
    strokes join them into one piece of ink across the frame, with few holes (six cells and the
    digit's loop). That piece is a grid, not a typical piece of ink: its lines are taken out and
    the digit found (the whole frame was one candidate)."""
    img = sheet(412, 412, value=(185, 185, 185))
    for v in (30, 230):
        cv2.line(img, (v, 0), (v, 411), (150, 150, 150), 3)
        cv2.line(img, (0, v), (411, v), (150, 150, 150), 3)
    truth = np.array([stamp(img, first(digits, 6), 150, 110, 180)])
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.5) + np.random.default_rng(0).normal(0, 2, img.shape)
    boxes = find_candidates(np.clip(img, 0, 255).astype(np.uint8)).boxes
    assert matched(truth, boxes, 0.9) == 1 == len(boxes)


def test_small_digits_in_marker_are_found(digits):
    """Digits 20 px tall in a felt-tip's bold strokes (MNIST's grown by a 3x3 square, a pixel of
    blur) have strokes a third of their height and more: digits, not blobs."""
    images, labels = digits
    img, truth = sheet(), []
    for row in range(2):
        for i, label in enumerate([5, 8, 0, 2, 3, 6, 9, 4]):
            bold = cv2.dilate(images[np.flatnonzero(labels == label)[row]], np.ones((3, 3), np.uint8))
            truth.append(stamp(img, bold, 40 + 70 * i, 150 + 100 * row, 20, ink=(50, 50, 50)))
    found = find_candidates(cv2.GaussianBlur(img, (0, 0), 1.0)).boxes
    assert matched(np.array(truth), found) == 16


def test_a_long_stroke_beside_a_page_of_digits_is_no_close_up(digits):
    """A pen stroke curving in from the frame's edge, large beside a page's 40 digits, is not
    taken for the picture of one digit held close (which may touch the frame's edge)."""
    images, _ = digits
    img, truth = sheet(), []
    for k in range(40):
        truth.append(stamp(img, images[k], 150 + 45 * (k % 10), 40 + 45 * (k // 10), 28))
    cv2.polylines(img, [np.array([[60, 479], [80, 380], [120, 300], [170, 250]], np.int32)], False, (40, 40, 40), 6)
    found = find_candidates(img).boxes
    assert matched(np.array(truth), found) == len(found) == 40


BLURRED_RULES = REALWORLD / "frames1280" / "adelian14_Handwritten-Digit-Recognition_digits.jpg"


@pytest.mark.skipif(not BLURRED_RULES.is_file(), reason="the development photos are not beside the project")
def test_big_digits_on_ruled_paper_out_of_focus():
    """Six digits 140 px tall written across the rules of a notebook, the photo out of focus (a
    3-px blur): the blurred rules are taken out whole, not left as fragments that look like a
    page of small digits, whose closer look found only rules (nothing was found)."""
    boxes = find_candidates(cv2.GaussianBlur(cv2.imread(str(BLURRED_RULES)), (0, 0), 3)).boxes
    assert len(boxes) == 6 and (boxes[:, 3] > 100).all()


def test_a_video_of_squared_paper_searches_afresh_for_a_line_it_lost(digits):
    """The squared sheet of test_digits_on_squared_paper_are_found held to a camera that shakes by
    3 px. Each frame looks for the last frame's lines near their places; where one was not found
    again, it stayed in the mask and joined every digit into one piece, which left no more long
    pieces than before (the grid was one already), and the frame showed no digit at all (2 of 5
    frames). A line of the last frame not found again now means a fresh search."""
    (frame, truth), polarity = squared_sheet(digits), None
    for t in range(5):
        dx, dy = 3 * np.sin(t), 3 * np.cos(t)  # a sub-pixel shift: the lines' pixels change a little
        cand = find_candidates(moved(frame, dx, dy), polarity=polarity)
        polarity = cand.polarity
        assert matched(truth + [round(dx), round(dy), 0, 0], cand.boxes) == len(cand.boxes) == len(truth), t


def test_touching_neighbours_are_split(digits):
    img = sheet()
    zero, three = first(digits, 0), first(digits, 3)
    # The 3 starts just where the 0 ends, so their strokes touch: one piece of ink.
    x0 = 200 + stamp(img, zero, 200, 150, 90)[2] - 7
    stamp(img, three, x0, 150, 90)
    c = find_candidates(img)
    n, _ = cv2.connectedComponents((to_gray(img) < 128).astype(np.uint8))
    assert n - 1 == 1 and len(c.boxes) == 2
    assert abs(int(c.boxes[:, 0].min()) - 200) <= 3 and abs(int(c.boxes[:, 0].max()) - x0) <= 15


def test_a_page_of_faint_rules_moved_by_parts_of_a_pixel(digits):
    """A 1280x720 page of 200 small digits on faint rules, which break into dashes, moved by parts
    of a pixel in 6 steps. The line search ran only where a piece of ink was a line long; in one
    position no piece was (the row sitting on a rule joined only some of its dashes, 301 of 924
    working pixels), no rule was searched for, and the 15 digits of that row were lost with it.
    A piece half a line long is searched too: every position finds about as many digits."""
    cfg = replace(synth.page_config(1280, 720, 200), ruled_p=1.0, light_on_dark_p=0.0)
    page = next(synth.scenes(1, 4, cfg, digits=digits))
    found = []
    for t in range(6):
        dx, dy = 0.7 * t, 0.45 * t
        found.append(matched(page.boxes + np.round([dx, dy, 0, 0]).astype(int),
                             find_candidates(moved(page.image, dx, dy)).boxes))
    assert min(found) >= max(found) - 3 and min(found) >= 195, found


def test_digits_on_ruled_paper(digits):
    img = sheet()
    for y in range(30, 480, 42):  # faint blue rules, tilted like a sheet that is not square on
        cv2.line(img, (0, y), (639, y + 12), (205, 175, 150), 2, cv2.LINE_AA)
    xs = [60, 150, 240, 330, 420]
    for i, x in enumerate(xs):
        stamp(img, first(digits, i + 3), x, 100, 70, ink=(120, 40, 20))  # crossing two rules
    boxes = find_candidates(img).boxes
    assert len(boxes) == len(xs)
    assert sorted(abs(boxes[:, 0] - np.array(xs)[None].T).min(1).tolist())[-1] <= 4


def test_light_digits_sitting_on_darker_rules(digits):
    """Digits in light ink (a pencil, a pale pen) written on a notebook's rules, which are darker
    than they are: with the rules taken out, the paper around a digit is no texture it must
    stand out from (5 of 50 were found)."""
    img, truth = sheet(), []
    for i, y in enumerate(range(40, 480, 40)):
        cv2.line(img, (0, y), (639, y + 8), (150, 110, 80), 2, cv2.LINE_AA)
        if i % 2:
            truth += [stamp(img, first(digits, (i + k) % 10), 30 + 60 * k, round(y + 8 * (30 + 60 * k) / 639) - 22,
                            24, ink=(150, 140, 120)) for k in range(10)]
    boxes = find_candidates(cv2.GaussianBlur(img, (0, 0), 1.0)).boxes
    assert matched(np.array(truth), boxes) >= 45 and len(boxes) <= 55


@pytest.mark.parametrize("rule", [5, 7])
def test_digits_sitting_on_bold_rules(digits, rule):
    """A sheet ruled with bold lines (ruled paper seen close, a form's rules), a row of ten digits
    on every other one: each rule is taken out by its own width, its edges too, and the digits
    stay (its edges were left standing and joined each row into a line: 8 and 0 of 50)."""
    img, truth = sheet(), []
    for i, y in enumerate(range(40, 480, 40)):
        cv2.line(img, (0, y), (639, y + 8), (150, 110, 80), rule, cv2.LINE_AA)
        if i % 2:
            truth += [stamp(img, first(digits, (i + k) % 10), 30 + 60 * k,
                            round(y + 8 * (30 + 60 * k) / 639) - 28 - rule // 2, 30) for k in range(10)]
    boxes = find_candidates(img).boxes
    assert matched(np.array(truth), boxes) >= 45 and len(boxes) <= 55


def test_digits_along_a_sharp_shadow_edge(digits):
    img = sheet()
    # Ballpoint digits, in a row that a shadow's edge cuts through.
    truth = [pen(img, first(digits, i), 40 + 78 * i, 210, 60) for i in range(7)]
    yy, xx = np.mgrid[:480, :640]
    shade = cv2.GaussianBlur((yy > 228 + 0.1 * (xx - 320)).astype(np.float32), (0, 0), 2)
    img = (img * (1 - 0.6 * shade)[..., None]).astype(np.uint8)
    boxes = find_candidates(img).boxes
    assert matched(np.array(truth), boxes) == len(truth) == len(boxes)


def test_a_strip_of_digits_half_in_shadow(digits):
    img = sheet(134, 1280)
    # A ballpoint row photographed on its own, a shadow over its lower half.
    truth = [pen(img, first(digits, i), 40 + 124 * i, 30, 72, ink=(70, 70, 70)) for i in range(10)]
    yy = np.mgrid[:134, :1280][0]
    shade = cv2.GaussianBlur((yy > 70).astype(np.float32), (0, 0), 12)
    img = (img * (1 - 0.5 * shade)[..., None] + np.random.default_rng(0).normal(0, 2, img.shape)).clip(0, 255)
    boxes = find_candidates(img.astype(np.uint8)).boxes
    # The background lags behind the shadow's edge; that is not the camera's noise.
    assert matched(np.array(truth), boxes) == len(truth) == len(boxes)


def test_digits_in_a_forms_printed_boxes(digits):
    img = sheet()
    truth = []
    for row, y in enumerate((120, 260)):
        for i in range(9):  # a row of boxes side by side, each a digit written inside
            x = 40 + 62 * i
            cv2.rectangle(img, (x, y), (x + 56, y + 70), (90, 90, 90), 2)
            truth.append(stamp(img, first(digits, (i + row) % 10), x + 8 + 2 * (i % 3), y + 12 + 2 * (i % 4), 40))
    boxes = find_candidates(cv2.GaussianBlur(img, (3, 3), 0)).boxes
    assert matched(np.array(truth), boxes) == len(truth) == len(boxes)  # the boxes' sides are not 1s
    # Nor part of a digit that touches them (the first row's 8 pokes out of its box's right side).
    assert ((boxes[:, 0] + boxes[:, 2] - 40) % 62 <= 55).all()


def test_a_row_of_digits_is_not_taken_for_a_ruled_line(digits):
    img = sheet()
    cv2.line(img, (600, 10), (606, 470), (40, 40, 40), 3)  # a long line elsewhere: the sheet's edge
    truth = [stamp(img, first(digits, d), 40 + 52 * i, 200, 40) for i, d in enumerate((1, 2, 3, 0, 7, 4, 6, 8, 7, 5))]
    boxes = find_candidates(img).boxes
    assert len(boxes) == 10
    assert (synth.box_iou(np.array(truth), boxes).max(1) >= 0.8).all()  # bars and tops kept


def test_big_and_small_digits_in_one_frame(digits):
    img = sheet(720, 1280)
    stamp(img, first(digits, 3), 80, 80, 380)  # a close-up filling half the frame
    xs = []
    for i in range(20):  # a row of twenty small ones
        x = 40 + 60 * i
        stamp(img, first(digits, i % 10), x, 560, 36)
        xs.append(x)
    boxes = find_candidates(img).boxes
    big = boxes[boxes[:, 3] > 300]
    small = boxes[boxes[:, 3] < 60]
    assert len(big) == 1 and len(small) == 20 and len(boxes) == 21


@pytest.mark.parametrize("size", [(640, 480), (518, 518), (601, 451), (300, 200)])  # whole and fractional reductions
@pytest.mark.parametrize("board", [True, False])
def test_light_on_dark_board(digits, size, board):
    img = sheet(value=(40, 55, 40) if board else PAPER)
    for i, d in enumerate((2, 0, 2, 4)):
        stamp(img, first(digits, d), 120 + 100 * i, 180, 80, ink=(230, 230, 230) if board else (30, 30, 30))
    c = find_candidates(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    assert c.light_on_dark == board and len(c.boxes) == 4


def test_video_polarity_is_reused_until_the_scene_changes(digits):
    paper, board = sheet(), sheet(value=(40, 55, 40))
    for i, d in enumerate((2, 0, 2, 4)):
        stamp(paper, first(digits, d), 120 + 100 * i, 180, 80)
        stamp(board, first(digits, d), 120 + 100 * i, 180, 80, ink=(230, 230, 230))
    moved = np.roll(paper, 4, axis=1)  # the camera moved a little: the decision is reused, same result
    c = find_candidates(moved, polarity=find_candidates(paper).polarity)
    fresh = find_candidates(moved)
    assert c.polarity.age == 1 and not c.light_on_dark and np.array_equal(c.boxes, fresh.boxes)
    # The scene flips from paper to a chalkboard: decided afresh, and the chalk is found.
    c = find_candidates(board, polarity=c.polarity)
    assert c.polarity.age == 0 and c.light_on_dark and len(c.boxes) == 4
    # ... and back.
    c = find_candidates(paper, polarity=c.polarity)
    assert c.polarity.age == 0 and not c.light_on_dark and len(c.boxes) == 4
    # A still scene is decided afresh every polarity_every frames.
    ages, p = [], c.polarity
    for _ in range(DetectConfig().polarity_every + 1):
        p = find_candidates(paper, polarity=p).polarity
        ages.append(p.age)
    assert ages == list(range(1, DetectConfig().polarity_every + 1)) + [0]


def test_boxes_in_original_pixels_at_any_size(digits):
    sc = next(synth.scenes(1, seed=9, digits=digits))
    big = cv2.resize(sc.image, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # 1920 x 1440
    c = find_candidates(big)
    assert c.scale == pytest.approx(640 / 1920)
    assert matched(sc.boxes * 3, c.boxes) == len(sc.boxes)


def test_max_digits_bounds_the_work(digits):
    img = sheet()
    for i in range(30):
        stamp(img, first(digits, i % 10), 30 + 60 * (i % 10), 40 + 140 * (i // 10), 50)
    assert len(find_candidates(img).boxes) == 30 and find_candidates(img).dropped == 0
    c = find_candidates(img, DetectConfig(max_digits=7))
    assert len(c.boxes) == 7 and c.dropped == 23  # the limit is reported, never silent


@pytest.mark.parametrize("step", [7, 2])  # a few pieces; more pieces (76,800) than 16-bit labels can number
def test_components_match_opencv_at_any_count(step):
    mask = np.zeros((480, 640), np.uint8)
    mask[::step, ::step] = 1
    mask[100:140, 200:203] = 1  # a stroke joining some of them
    n, labels, stats = components(mask)
    n32, labels32, stats32, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    assert n == n32 and np.array_equal(labels, labels32) and np.array_equal(stats, stats32)


@pytest.mark.parametrize("slope", [0.0, 0.03, -0.4, 2.0])
def test_fit_line_equals_polyfit(slope):
    rng = np.random.default_rng(1)
    u = rng.integers(0, 640, 300)
    v = np.rint(slope * u + 40 + rng.normal(0, 1.5, 300)).astype(np.int64)
    assert fit_line(u, v) == pytest.approx(tuple(np.polyfit(u, v, 1)), rel=1e-9, abs=1e-9)


def test_pieces_are_paired_with_every_near_neighbour_and_no_other():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 100, 300), rng.integers(0, 100, 300)
    i, j = _near_pairs(x, y, 10)
    found = {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist())}
    assert len(found) == len(i)  # each pair once
    assert found == {(a, b) for a in range(300) for b in range(a + 1, 300)
                     if abs(x[a] - x[b]) <= 10 and abs(y[a] - y[b]) <= 10}


@pytest.fixture(scope="module")
def small_page(digits) -> np.ndarray:
    """A 1280x720 page of 60 digits too small for the first look."""
    cfg = synth.SceneConfig(width=1280, height=720, min_digits=60, max_digits=60, min_height=14, max_height=20,
                            closeup_p=0.0)
    return next(synth.scenes(1, seed=4, cfg=cfg, digits=digits)).image


def test_few_candidates_are_told_from_their_surroundings_as_a_page_is(small_page, monkeypatch):
    cfg = DetectConfig()
    work = to_gray(small_page)
    work = cv2.add(work, np.random.default_rng(0).integers(0, 12, work.shape, dtype=np.uint8))  # grain
    ink, pieces = detect._pieces_at(work, cfg)
    boxes, masks, _ = detect.digit_shapes(pieces, cfg)
    boxes, masks = boxes[:20], masks[:20]
    verdicts = []
    for snr in (2.0, 8.0, 12.0, 16.0, 20.0):
        c = DetectConfig(local_snr=snr)
        each = detect.stands_out(boxes, masks, work, ink, c)
        with monkeypatch.context() as m:
            m.setattr(detect, "PAGE_PIECES", 0)  # the integral images of a page
            assert np.array_equal(each, detect.stands_out(boxes, masks, work, ink, c))
        verdicts.append(each.sum())
    assert verdicts[0] == len(boxes) > verdicts[-1] and len(set(verdicts)) >= 3  # the test tells them apart


def test_a_page_of_small_digits_is_grouped_and_tested_only_at_its_closer_look(small_page, monkeypatch):
    grouped = []
    real = detect.digit_shapes
    monkeypatch.setattr(detect, "digit_shapes", lambda p, cfg: grouped.append(p.labels.shape) or real(p, cfg))
    quick = find_candidates(small_page)
    assert len(grouped) == 1 and grouped[0] == quick.mask.shape != (416, 739)  # not at the working size
    monkeypatch.setattr(detect, "PAGE_PIECES", 10 ** 9)  # every look finished, as for a few digits,
    monkeypatch.setattr(detect.Pieces, "digit_height", property(lambda p: p.ref_h))  # grouped as a page
    full = find_candidates(small_page)
    assert len(grouped) == 3 and grouped[1] == (416, 739)
    assert full.scale == quick.scale and np.array_equal(full.boxes, quick.boxes)


def test_a_ruled_page_of_small_digits_is_searched_for_lines_only_at_its_closer_look(digits, monkeypatch):
    cfg = synth.SceneConfig(width=1280, height=720, min_digits=60, max_digits=60, min_height=14, max_height=20,
                            closeup_p=0.0, ruled_p=1.0)
    scene = next(synth.scenes(1, seed=5, cfg=cfg, digits=digits))
    searched = []
    real = detect.line_mask
    monkeypatch.setattr(detect, "line_mask", lambda mask, *a: searched.append(mask.shape) or real(mask, *a))
    c = find_candidates(scene.image)
    assert searched == [c.mask.shape] and c.scale > work_scale(scene.image.shape[:2], DetectConfig())
    assert (c.mask == 128).sum() > 1000  # the rules were found there and taken out
    assert matched(scene.boxes, c.boxes) >= 0.9 * len(scene.boxes)


def test_a_video_of_a_ruled_page_finds_its_lines_where_the_last_frame_had_them(digits, monkeypatch):
    from backend.frame import lines

    cfg = synth.SceneConfig(width=1280, height=720, min_digits=60, max_digits=60, min_height=14, max_height=20,
                            closeup_p=0.0, ruled_p=1.0)
    page = next(synth.scenes(1, seed=5, cfg=cfg, digits=digits)).image
    hough = []
    real = cv2.HoughLinesP
    monkeypatch.setattr(lines.cv2, "HoughLinesP", lambda *a, **k: hough.append(1) or real(*a, **k))
    first = find_candidates(page)
    assert len(hough) == 1 and len(first.polarity.lines.found) >= 5
    rng = np.random.default_rng(0)
    for shift in (0, 1, 2):  # the page held up, moving a little, with fresh noise
        noisy = np.clip(moved(page, 0, shift) + rng.normal(0, 3, page.shape), 0, 255).astype(np.uint8)
        fresh = find_candidates(noisy)
        hough.clear()
        again = find_candidates(noisy, polarity=first.polarity)
        assert hough == [] and len(again.polarity.lines.found) >= len(first.polarity.lines.found) - 2
        assert len(again.boxes) >= len(fresh.boxes) - 1
        assert abs(int((again.mask == 128).sum()) - int((fresh.mask == 128).sum())) < 0.05 * (fresh.mask == 128).sum()
    # A new long stroke across the page (a margin drawn): searched afresh.
    ruled = page.copy()
    cv2.line(ruled, (300, 0), (300, 719), (40, 40, 40), 3)
    hough.clear()
    find_candidates(ruled, polarity=first.polarity)
    assert hough == [1]


def test_a_video_of_a_page_with_thick_and_thin_rules_keeps_finding_them_where_they_were(digits, monkeypatch):
    """A ruled sheet whose every third rule is thicker: each rule is taken out by its own
    thickness, so the next frame of a video finds them where the last one had them, without
    a fresh search (the thick rules' remnants sent every frame back to one)."""
    from backend.frame import lines

    img = sheet()
    truth = []
    for i, y in enumerate(range(40, 480, 40)):
        cv2.line(img, (0, y), (639, y + 8), (150, 110, 80), 3 if i % 3 == 0 else 1, cv2.LINE_AA)
        if i % 2:  # a row of digits sitting on every other rule
            truth += [stamp(img, first(digits, (i + k) % 10), 30 + 60 * k, round(y + 8 * (30 + 60 * k) / 639) - 28, 30)
                      for k in range(10)]
    img = cv2.GaussianBlur(img, (3, 3), 0)
    hough = []
    real = cv2.HoughLinesP
    monkeypatch.setattr(lines.cv2, "HoughLinesP", lambda *a, **k: hough.append(1) or real(*a, **k))
    c = find_candidates(img)
    assert hough == [1] and c.polarity.lines.left == 0
    assert matched(np.array(truth), c.boxes) == len(truth) == len(c.boxes)
    hough.clear()
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    again = find_candidates(noisy, polarity=c.polarity)
    assert hough == [] and again.polarity.lines.seeded
    assert matched(np.array(truth), again.boxes) >= len(truth) - 1 and len(again.boxes) == len(truth)


def test_a_page_in_a_video_gets_its_closer_look_at_once(small_page, monkeypatch):
    page = small_page
    first = find_candidates(page)
    assert first.polarity.scale == first.scale  # its digits were too small for one look
    looks = []
    real = detect._candidates_at
    monkeypatch.setattr(detect, "_candidates_at", lambda *a, **k: looks.append(a[0].shape) or real(*a, **k))
    noisy = np.clip(page + np.random.default_rng(0).normal(0, 3, page.shape), 0, 255).astype(np.uint8)
    second = find_candidates(noisy, polarity=first.polarity)
    assert len(looks) == 1 and second.scale == first.scale  # the next frame goes straight to it
    assert np.array_equal(second.boxes, find_candidates(noisy).boxes)  # and finds what a fresh look finds
