"""Synthetic scenes: deterministic, boxes that hold their digits, a moving demo sheet."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.frame import synth


def test_same_seed_same_scenes(digits):
    a = list(synth.scenes(3, seed=7, digits=digits))
    b = list(synth.scenes(3, seed=7, digits=digits))
    c = list(synth.scenes(3, seed=8, digits=digits))
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image)
        assert np.array_equal(x.boxes, y.boxes) and np.array_equal(x.labels, y.labels)
    assert not all(np.array_equal(x.image, z.image) for x, z in zip(a, c))


def test_scene_contents(digits):
    for sc in synth.scenes(6, seed=3, digits=digits):
        H, W = sc.image.shape[:2]
        assert sc.image.dtype == np.uint8 and sc.image.shape == (480, 640, 3)
        assert sc.boxes.dtype == np.int32 and sc.boxes.shape == (len(sc.labels), 4)
        x, y, w, h = sc.boxes.T
        assert (x > 0).all() and (y > 0).all() and (x + w < W).all() and (y + h < H).all()
        assert sorted(i for line in sc.lines for num in line for i in num) == list(range(len(sc.labels)))
        assert sc.text.replace("/", "").replace(" ", "") == "".join(
            str(sc.labels[i]) for line in sc.lines for num in line for i in num)


def stroke_contrast(img: np.ndarray) -> np.ndarray:
    """How far each pixel stands out, darker or lighter, from the paper within 5 px: a pen or
    chalk stroke by far more than grain, sensor noise and soft shadows. A 24 px border is left
    out: the table can show at the sheet's corners."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[24:-24, 24:-24]
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    return np.maximum(cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, k), cv2.morphologyEx(g, cv2.MORPH_TOPHAT, k))


@pytest.mark.parametrize("kind", ["paper", "plain"])
def test_blank_scene_has_nothing_written_on_it(kind):
    cfg = synth.SceneConfig(ruled_p=0.0, table_p=0.0)  # ruled lines and a table's edge stand out too
    written = next(synth.scenes(1, seed=0, cfg=cfg, digits=synth.demo_digits()))
    assert (stroke_contrast(written.image) > 40).sum() > 1000  # what a few digits give
    rng = np.random.default_rng(0)
    for _ in range(8):  # measured: at most 28 over 40 blank scenes of each kind
        img = synth.blank_scene(rng, cfg, kind=kind)
        assert img.shape == (480, 640, 3) and stroke_contrast(img).max() < 40


def test_noise_scene_is_noise_only():
    img = synth.blank_scene(np.random.default_rng(0), kind="noise")
    blocks = img.reshape(15, 32, 20, 32, 3).mean(axis=(1, 3))  # 32x32 blocks, per channel
    assert img.min() == 0 and img.max() == 255 and np.abs(blocks - 127.5).max() < 12  # no shape anywhere


def test_demo_scene_moves(digits):
    demo = synth.DemoScene(digits=digits, size=(320, 240))
    f0, f1 = demo.next_frame(), demo.next_frame()
    for _ in range(20):
        f2 = demo.next_frame()
    assert f0.shape == (240, 320, 3) and f0.dtype == np.uint8
    assert np.abs(f0.astype(int) - f2.astype(int)).mean() > np.abs(f0.astype(int) - f1.astype(int)).mean()


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    assert np.allclose(synth.box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_pipeline_crops_are_labelled_mnist_crops(mnist_dir):
    pairs = list(synth.pipeline_crops(3, seed=0, data_dir=str(mnist_dir), train=False))
    assert len(pairs) >= 5
    for crop, label in pairs:
        assert crop.shape == (28, 28) and crop.dtype == np.uint8 and 0 <= label <= 9
        assert crop.max() >= 200 and crop[[0, -1]].max() < 64  # white digit, black margin


def test_pages_of_small_digits_for_fine_tuning(digits, mnist_dir, tmp_path):
    """`--pages`: 640x480 pages of 200 digits 13-20 px tall, their crops labelled; a faint digit
    written that small, with no pixel half inked, has its box where its ink is darkest."""
    faint = (digits[0][:50] * 0.3).astype(np.uint8), digits[1][:50]
    sc = synth.render_scene(np.random.default_rng(0), *faint, synth.page_config(640, 480, 200))
    assert len(sc.labels) >= 150 and (sc.boxes[:, 2:] >= 1).all() and (sc.boxes[:, 3] <= 26).all()
    out = tmp_path / "crops.npz"
    assert synth.main(["--scenes", "0", "--pages", "1", "--data-dir", str(mnist_dir), "--out", str(out)]) == 0
    crops = np.load(out)
    assert len(crops["labels"]) >= 150 and crops["images"].shape[1:] == (28, 28)


def test_demo_runs_offline_without_mnist(tmp_path, monkeypatch):
    """--source demo needs no MNIST on disk and no network: it uses the shipped digits, and the
    shipped model reads the whole sheet from them."""
    import socket

    from backend.frame.pipeline import Pipeline
    from backend.live.sources import open_source
    from backend.model.recognizer import Recognizer, RecognizerConfig

    def no_network(*args, **kwargs):
        raise AssertionError("the demo tried to use the network")

    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))  # empty: no MNIST here
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    images, labels = synth.demo_digits()
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert 100 <= len(labels) <= 1000 and set(labels.tolist()) == set(range(10))
    source = open_source("demo")
    ok, frame = source.read()
    assert ok and frame.shape == (480, 640, 3)
    result = Pipeline(Recognizer(None, RecognizerConfig(device="cpu"))).process(frame)
    assert "".join(result.numbers) == "".join(synth.DemoScene.TEXT).replace(" ", "")
    assert not list(tmp_path.iterdir())  # nothing was downloaded
