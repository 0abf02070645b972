"""Preprocessing: crops come out the way MNIST digits look."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.frame import preprocess, synth
from scenes import write_digit
from backend.frame.detect import find_candidates, stroke_width
from backend.frame.mnist import FIT_SIZE, IMG_SIZE, MNIST_MEAN, MNIST_STD, MNIST_STROKE, fit_and_centre
from backend.frame.preprocess import candidates_to_mnist, normalise_strokes, percentile, to_batch


def mnist_stroke(img28: np.ndarray) -> float:
    """Stroke width measured exactly as MNIST_STROKE was: 4x upscaled, binarised at half."""
    big = cv2.resize(img28, (4 * IMG_SIZE, 4 * IMG_SIZE), interpolation=cv2.INTER_LINEAR)
    return stroke_width((big > 127).astype(np.uint8)) / 4


def scene_with(digit28: np.ndarray, height: int, weight: float, board: bool = False) -> np.ndarray:
    """One digit on plain paper (or chalk on a board), `weight` 0 = ballpoint .. 1 = marker."""
    img = np.full((480, 640, 3), (40, 55, 40) if board else (235, 238, 240), np.float32)
    write_digit(img, digit28, 100, 60, height, weight, (230, 230, 230) if board else (120, 40, 20))
    return np.clip(img + np.random.default_rng(0).normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_fit_and_centre_shifts_each_digit_as_a_warp_would():
    """A chunk of digits fitted at once, the ink anywhere (all of it in a corner: the largest
    shifts), against one warp each; an empty digit is an empty canvas."""
    rng = np.random.default_rng(3)
    digits = [(rng.random((h, w)) * 255).astype(np.uint8) for h, w in ((40, 30), (13, 5), (9, 60), (20, 20))]
    for corner in ((0, 0), (-1, -1), (0, -1)):
        d = np.zeros((30, 24), np.uint8)
        d[0, 0] = d[-1, -1] = 60  # tight: ink at both ends
        d[corner] = 255
        digits.append(d)
    digits.append(np.zeros((0, 0), np.uint8))
    out = fit_and_centre(digits)
    assert out.shape == (len(digits), IMG_SIZE, IMG_SIZE) and out.dtype == np.uint8
    for d, got in zip(digits[:-1], out):
        s = FIT_SIZE / max(d.shape)
        small = cv2.resize(d, (max(1, round(d.shape[1] * s)), max(1, round(d.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        m = cv2.moments(small)
        shift = np.float32([[1, 0, IMG_SIZE / 2 - m["m10"] / m["m00"]], [0, 1, IMG_SIZE / 2 - m["m01"] / m["m00"]]])
        want = cv2.warpAffine(small.astype(np.float32), shift, (IMG_SIZE, IMG_SIZE), flags=cv2.INTER_LINEAR)
        assert np.abs(got.astype(int) - want.astype(np.uint8)).max() <= 1
        assert got.sum() > 0
    assert not out[-1].any()


def test_mnist_geometry(digits):
    sc = next(synth.scenes(1, seed=12, digits=digits))
    crops = candidates_to_mnist(find_candidates(sc.image))
    assert crops.dtype == np.uint8 and crops.shape == (len(sc.boxes), IMG_SIZE, IMG_SIZE)
    for c in crops:
        m = cv2.moments(c.astype(np.float32))
        assert abs(m["m10"] / m["m00"] - IMG_SIZE / 2) < 0.75 and abs(m["m01"] / m["m00"] - IMG_SIZE / 2) < 0.75
        ys, xs = np.nonzero(c > 40)
        assert FIT_SIZE - 2 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= FIT_SIZE + 1  # fitted to 20x20
        assert c.max() >= 230  # stroke cores are white, like MNIST's
        assert np.mean(c[[0, 1, -2, -1]]) < 5  # on black


@pytest.mark.parametrize("height", [40, 300])
def test_stroke_width_normalised(digits, height):
    d = digits[0][np.flatnonzero(digits[1] == 4)[0]]
    widths = []
    for weight in (0.0, 1.0):  # ballpoint, marker
        frame = scene_with(d, height, weight)
        crop = candidates_to_mnist(find_candidates(frame))
        assert len(crop) == 1
        widths.append(mnist_stroke(crop[0]))
    assert abs(widths[0] - widths[1]) < 0.6
    for w in widths:
        assert abs(w - MNIST_STROKE) < 0.6


def test_light_on_dark_crops_look_like_dark_on_light(digits):
    d = digits[0][np.flatnonzero(digits[1] == 2)[0]]
    a = candidates_to_mnist(find_candidates(scene_with(d, 120, 0.6)))
    b = candidates_to_mnist(find_candidates(scene_with(d, 120, 0.6, board=True)))
    assert len(a) == len(b) == 1
    assert np.corrcoef(a[0].ravel().astype(float), b[0].ravel().astype(float))[0, 1] > 0.9


def test_crop_resembles_its_mnist_source(digits):
    d = digits[0][np.flatnonzero(digits[1] == 7)[0]]
    crop = candidates_to_mnist(find_candidates(scene_with(d, 160, 0.5)))[0]
    assert np.corrcoef(crop.ravel().astype(float), d.ravel().astype(float))[0, 1] > 0.8


def test_to_batch_normalises_like_training():
    x = np.zeros((2, IMG_SIZE, IMG_SIZE), np.uint8)
    x[1] = 255
    b = to_batch(x)
    assert b.shape == (2, 1, IMG_SIZE, IMG_SIZE) and b.dtype == np.float32
    assert np.allclose(b[0], -MNIST_MEAN / MNIST_STD) and np.allclose(b[1], (1 - MNIST_MEAN) / MNIST_STD)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1001])
@pytest.mark.parametrize("q", [0, 50, 90, 100])
def test_percentile_equals_numpys(n, q):
    values = np.random.default_rng(n).random(n).astype(np.float32)
    values[: n // 3] = values[-1]  # ties
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-6, abs=1e-7)


def test_crops_prepared_together_come_out_as_each_alone(digits, monkeypatch):
    """A chunk's crops are worked on side by side: neighbours must not reach into each other.
    Scenes of digits 22 to 120 px tall, and one at 1280x720 (regions further apart) whose tallest
    digit is three times its shortest (worked on in groups of like heights), each crop prepared
    with all the others, in chunks of three and on its own."""
    scenes = [*synth.scenes(2, seed=5, cfg=synth.SceneConfig(min_digits=8, max_digits=10, closeup_p=0.0), digits=digits),
              *synth.scenes(1, seed=7, cfg=synth.SceneConfig(width=1280, height=720, min_digits=10, max_digits=12,
                                                             max_height=200, closeup_p=0.0), digits=digits)]
    heights = []
    for sc in scenes:
        c = find_candidates(sc.image)
        together = candidates_to_mnist(c)
        assert len(together) >= 6
        for i in range(len(c.boxes)):
            assert np.array_equal(together[i], candidates_to_mnist(c, None, i, i + 1)[0])
        chunks = np.concatenate([candidates_to_mnist(c, None, s, s + 3) for s in range(0, len(c.boxes), 3)])
        assert np.array_equal(together, chunks)
        heights.append(c.boxes[:, 3].max() / c.boxes[:, 3].min())
    assert c.scale < 1 and heights[-1] > 3  # regions further apart than two pixels, and of many heights
    monkeypatch.setattr(preprocess, "MOSAIC", 4)  # more candidates than prepared side by side at once
    assert np.array_equal(candidates_to_mnist(c), together)


def normalised_alone(digit: np.ndarray) -> np.ndarray:
    """What normalise_strokes does to one digit, spelt out on the digit alone: fitted to the 60 px
    canvas, a shrunken hairline stretched, its stroke width measured as detect.stroke_width does
    and brought to MNIST's by a dilation or an erosion, cut to its ink above 0.1, in 8 bits."""
    side, target = 60, 3 * MNIST_STROKE
    h, w = digit.shape
    if h == 0 or w == 0:
        return np.zeros((0, 0), np.uint8)
    f = side / max(h, w)
    img = cv2.resize(digit, (max(1, round(w * f)), max(1, round(h * f))),
                     interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    on = img[img > 0.05]
    if f < 1 and on.size and np.count_nonzero(on < 1.0) > int(0.9 * (on.size - 1)):
        img = np.minimum(img * (1.0 / max(percentile(on, 90), 0.2)), 1)
    sw = stroke_width((img > 0.5).astype(np.uint8))
    disk = lambda k: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))  # noqa: E731
    if target - sw >= 1.0:
        k = int(round(target - sw)) + 1
        img = cv2.dilate(cv2.copyMakeBorder(img, k, k, k, k, cv2.BORDER_CONSTANT, value=0), disk(k))
    elif target - sw <= -1.0 and (k := int(round(min(sw - target, sw - 0.7 * target, 0.2 * side))) + 1) >= 2:
        img = cv2.erode(img, disk(k))
    x, y, w, h = cv2.boundingRect((img > 0.1).astype(np.uint8))
    return (img[y:y + h, x:x + w] * 255).astype(np.uint8)


def test_strokes_normalised_side_by_side_as_each_alone():
    """Digits whose strokes are widened (a thin pen, the widest 60 px across), thinned (a marker),
    stretched (a faint hairline shrunk) or left alone, and an empty one, normalised side by side,
    against each digit's own normalisation."""
    def ring(h, w, t, level=1.0):
        img = np.zeros((h, w), np.float32)
        cv2.ellipse(img, (w // 2, h // 2), (w // 2 - t, h // 2 - t), 0, 0, 360, level, t)
        return cv2.GaussianBlur(img, (3, 3), 0)
    digits = [ring(90, 90, 1), ring(40, 90, 1), ring(50, 30, 12), ring(120, 80, 2, 0.4), ring(12, 8, 1),
              np.zeros((0, 0), np.float32), ring(30, 20, 3), ring(200, 200, 40)]
    together = normalise_strokes(digits)
    assert all(np.array_equal(a, normalised_alone(d)) for a, d in zip(together, digits))
    assert together[0].shape[1] > 60 and together[1].shape[1] > 60  # widened past the 60 px fit
    assert together[5].size == 0
    assert np.array_equal(normalise_strokes([digits[0].astype(np.float64)])[0], together[0])  # any float type
