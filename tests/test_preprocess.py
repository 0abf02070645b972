"""Preprocessing: crops come out the way MNIST digits look."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.frame import synth
from scenes import write_digit
from backend.frame.detect import find_candidates
from backend.frame.mnist import FIT_SIZE, IMG_SIZE, MNIST_MEAN, MNIST_STD, MNIST_STROKE, fit_and_centre
from backend.frame.preprocess import candidates_to_mnist, percentile, stroke_width, to_batch


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
