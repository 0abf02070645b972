"""Sources: frame normalisation, files and folders, the threaded camera reader, demo and draw pad."""
from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

from scenes import StandInScene
from app_fakes import FakeCapture, digit_frame, write_video
from backend.errors import SourceError, UserError
from backend.live.sources import (DemoSource, DrawPad, FolderSource, ImageSource, LiveCapture, LiveConfig,
                                  VideoFileSource, decode_image, open_camera, open_source, prepare_frame,
                                  refuse_overwrites, to_bgr8)

H, W = 24, 32


@pytest.mark.parametrize("frame", [
    np.full((H, W), 200, np.uint8),  # gray
    np.full((H, W, 1), 200, np.uint8),  # gray with a channel axis
    np.full((H, W, 3), 200, np.uint8),  # BGR
    np.full((H, W, 4), 200, np.uint8),  # BGRA
    np.full((H, W, 3), 200 * 257, np.uint16),  # 16-bit
    np.full((H, W), 200 / 255, np.float32),  # float in [0, 1]
    np.full((H, W), 2 ** 30 + 2 ** 28, np.int32),  # another integer type (scaled by its range)
    np.ones((H, W), bool),  # a mask
], ids=["gray", "gray1", "bgr", "bgra", "uint16", "float", "int32", "bool"])
def test_to_bgr8_accepts_every_image_kind(frame):
    out = to_bgr8(frame)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert 190 <= int(out.mean()) <= 255


def test_transparent_pixels_become_white_paper():
    bgra = np.zeros((H, W, 4), np.uint8)  # black but fully transparent...
    bgra[5:10, 5:10] = (20, 20, 20, 255)  # ...except an opaque dark stroke
    out = to_bgr8(bgra)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[7, 7].tolist() == [20, 20, 20]


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0), np.uint8),
                                 np.zeros((4, 4, 5), np.uint8), np.zeros(10, np.uint8), None, "frame"],
                         ids=["zero-height", "zero-width", "5-channels", "1-d", "none", "str"])
def test_to_bgr8_refuses_non_images(bad):
    with pytest.raises(ValueError):
        to_bgr8(bad)


def test_prepare_frame_caps_enormous_frames():
    big = np.full((8000, 8000), 255, np.uint8)
    frame, scale = prepare_frame(big, max_side=1024)
    assert frame.shape == (1024, 1024, 3) and scale == pytest.approx(1024 / 8000)
    small, s = prepare_frame(np.zeros((100, 50, 3), np.uint8), max_side=1024)
    assert small.shape == (100, 50, 3) and s == 1.0


@pytest.fixture
def files(tmp_path):
    img = digit_frame("7")
    d = tmp_path
    cv2.imwrite(str(d / "b.png"), img)
    cv2.imwrite(str(d / "a.jpg"), img)
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "deep.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "alpha.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    (d / "random.png").write_bytes(np.random.default_rng(0).bytes(2000))
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes((d / "b.png").read_bytes()[:60])
    (d / "random.mp4").write_bytes(np.random.default_rng(1).bytes(5000))
    (d / "empty.mp4").write_bytes(b"")
    write_video(d / "clip.avi", [digit_frame(str(i)) for i in range(6)])
    (d / "empty_dir").mkdir()
    (d / "junk_dir").mkdir()
    (d / "junk_dir" / "x.png").write_bytes(b"not a png")
    (d / "notes.txt").write_text("not media")
    return d


@pytest.mark.parametrize("name", ["b.png", "a.jpg", "gray.png", "deep.png", "alpha.png"])
def test_image_files_of_any_depth_and_channels_read(files, name):
    src = open_source(str(files / name))
    assert isinstance(src, ImageSource)
    ok, frame = src.read()
    assert ok and prepare_frame(frame)[0].shape == (240, 320, 3)
    assert src.read() == (False, None)


@pytest.mark.parametrize("name, what", [
    ("missing.png", "no such file"), ("random.png", "cannot read image"), ("empty.png", "cannot read image"),
    ("truncated.png", "cannot read image"), ("random.mp4", "cannot read video"), ("empty.mp4", "cannot read video"),
    ("notes.txt", "cannot read video"), ("empty_dir", "no images in folder"),
])
def test_unreadable_inputs_are_user_errors(files, name, what):
    with pytest.raises(UserError, match=what) as e:
        src = open_source(str(files / name))
        src.read()
    assert e.value.code == 2 and "\n" not in str(e.value)


def test_folder_of_only_junk_fails_at_first_read(files):
    src = open_source(str(files / "junk_dir"))
    with pytest.raises(UserError, match="no readable images"):
        src.read()


def test_folder_reads_sorted_and_skips_unreadable_files(files):
    warnings = []
    src = FolderSource(files, warn=warnings.append)
    names = []
    while True:
        ok, frame = src.read()
        if not ok:
            break
        names.append(src.current_name.rsplit("/", 1)[-1])
    assert names == ["a.jpg", "alpha.png", "b.png", "deep.png", "gray.png"]
    assert sorted(w.split(":")[0].rsplit("/", 1)[-1] for w in warnings) == ["empty.png", "random.png", "truncated.png"]


def test_video_file_gives_every_frame_in_order(tmp_path):
    frames = [np.full((48, 64, 3), 10 + 20 * i, np.uint8) for i in range(10)]
    src = VideoFileSource(write_video(tmp_path / "v.avi", frames, fps=12))
    assert src.fps == pytest.approx(12)
    got = []
    while (r := src.read())[0]:
        got.append(int(r[1].mean()))
    src.release()
    assert len(got) == 10 and all(abs(g - (10 + 20 * i)) <= 3 for i, g in enumerate(got))
    assert src.read() == (False, None)  # and stays ended


def test_video_released_midway_stops_its_decoder(tmp_path):
    frames = [np.full((48, 64, 3), 10 + 5 * i, np.uint8) for i in range(40)]
    src = VideoFileSource(write_video(tmp_path / "v.avi", frames, fps=12))
    ok, first = src.read()
    time.sleep(0.2)  # the decoder fills its queue and waits
    src.release()
    assert ok and abs(int(first.mean()) - 10) <= 3
    assert not [t for t in threading.enumerate() if t.name == f"decode {src.name}"] and src.read() == (False, None)


def test_a_decoding_error_reaches_the_reader(tmp_path, monkeypatch):
    real = cv2.VideoCapture

    class Corrupt:  # the file's third packet cannot be decoded
        def __init__(self, name):
            self.cap, self.reads = real(name), 0

        def read(self):
            self.reads += 1
            if self.reads == 3:
                raise cv2.error("corrupt packet")
            return self.cap.read()

        def __getattr__(self, name):  # isOpened, get, release
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Corrupt)
    src = VideoFileSource(write_video(tmp_path / "v.avi", [np.zeros((48, 64, 3), np.uint8)] * 5, fps=12))
    assert src.read()[0] and src.read()[0]
    with pytest.raises(cv2.error, match="corrupt"):
        src.read()
    assert src.read() == (False, None)
    src.release()


def camera(frames, fail="end", delay=0.002, **cfg):
    caps = []

    def open_capture():  # the camera delivers `frames`, then fails; reopening it gives nothing
        caps.append(FakeCapture(frames if not caps else [], fail=fail, delay=delay))
        return caps[-1]

    kw = dict(retry_s=0.3, stall_s=0.3, retry_wait_s=0.05)
    kw.update(cfg)
    return LiveCapture(open_capture, "camera 9", LiveConfig(**kw), warn=lambda m: None), caps


def test_live_capture_always_hands_out_the_newest_frame():
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(200)]
    cam, _ = camera(frames, delay=0.001, retry_s=5, stall_s=5)
    seen = []
    for _ in range(5):
        time.sleep(0.03)  # a slow consumer
        seen.append(int(cam.read()[1][0, 0, 0]))
    cam.release()
    assert seen == sorted(seen) and len(set(seen)) == 5
    assert seen[-1] - seen[0] > 4  # frames in between were dropped, not queued


@pytest.mark.parametrize("fail", ["end", "raise", "stall"])
def test_lost_camera_is_retried_then_reported(fail):
    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    cam, caps = camera(frames, fail=fail)
    got = 0
    with pytest.raises(SourceError, match="camera 9") as e:
        while True:
            cam.read()
            got += 1
    cam.release()
    assert 1 <= got <= len(frames) and e.value.code == 1
    if fail != "stall":
        assert len(caps) > 1  # it tried to reopen the camera


def test_camera_that_comes_back_is_recovered():
    good = [np.full((4, 4, 3), 7, np.uint8)] * 1000
    calls = []

    def open_capture():
        calls.append(1)
        # The first capture dies after 2 frames; the reopened one works.
        return FakeCapture(good[:2] if len(calls) == 1 else good, fail="raise", delay=0.002)

    cam = LiveCapture(open_capture, "camera 9", LiveConfig(retry_s=2, stall_s=2, retry_wait_s=0.05), warn=lambda m: None)
    for _ in range(10):
        assert cam.read()[0]
    cam.release()
    assert len(calls) >= 2


def test_missing_camera_suggests_the_demo():
    with pytest.raises(SourceError, match="--source demo") as e:
        open_camera(97, cfg=LiveConfig(retry_s=0.1, stall_s=0.1))
    assert e.value.code == 1




def test_demo_source_wraps_a_scene():
    src = DemoSource(scene=StandInScene())
    frames = [src.read() for _ in range(3)]
    assert all(ok for ok, _ in frames) and src.live and src.name == "demo"
    assert not np.array_equal(frames[0][1], frames[1][1])


def test_draw_pad_draws_and_clears():
    pad = DrawPad(200, 100)
    blank = pad.read()[1].copy()
    pad.on_mouse(cv2.EVENT_LBUTTONDOWN, 50, 50, 0)
    pad.on_mouse(cv2.EVENT_MOUSEMOVE, 100, 60, 0)
    pad.on_mouse(cv2.EVENT_LBUTTONUP, 100, 60, 0)
    pad.on_mouse(cv2.EVENT_MOUSEMOVE, 150, 20, 0)  # button up: no ink
    drawn = pad.read()[1]
    assert drawn[55, 75].max() < 100 and drawn[20, 150].min() > 200
    pad.clear()
    assert np.array_equal(pad.read()[1], blank)


# --- photos as taken, hostile images, inputs that are not files -------------------------------

def _marked(w=6, h=4) -> np.ndarray:
    """(h, w, 3) image whose every pixel differs, so any rotation or flip shows."""
    return np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3) * 2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(orientation):
    from PIL import Image, ImageOps

    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_marked()).save(buf, "PNG", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    got = decode_image(buf.getvalue())[:, :, ::-1]  # BGR -> RGB
    assert got.shape == upright.shape and np.array_equal(got, upright)


def test_a_portrait_phone_photo_stored_sideways_reads_upright(tmp_path):
    from PIL import Image

    portrait = digit_frame("7", size=(240, 320))  # what the camera saw: 240 wide, 320 tall
    stored = np.ascontiguousarray(np.rot90(portrait, 1))  # stored landscape, EXIF 6: turn clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored[:, :, ::-1]).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    ok, frame = open_source(str(tmp_path / "phone.jpg")).read()
    assert frame.shape == (320, 240, 3) and np.abs(frame.astype(int) - portrait).mean() < 3


def _png_header(width: int, height: int, colour: int = 6) -> bytes:
    """A PNG that claims width x height RGBA pixels: the header of a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side, message", [(30000, "over 178,956,970 pixels"),  # past Pillow's own limit
                                           (12000, "12000x12000; the limit is 100,000,000")])  # past ours
def test_decompression_bombs_are_refused_from_the_header(tmp_path, monkeypatch, side, message):
    (tmp_path / "bomb.png").write_bytes(_png_header(side, side))
    cv2_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(UserError, match="too large") as e:
        open_source(str(tmp_path / "bomb.png"))
    assert e.value.code == 2 and message in str(e.value)
    monkeypatch.setattr(cv2, "imdecode", cv2_imdecode)
    # The limit is a setting: a small one refuses an ordinary photo too.
    cv2.imwrite(str(tmp_path / "ok.png"), digit_frame("3"))
    with pytest.raises(UserError, match="limit is 1,000 pixels"):
        open_source(str(tmp_path / "ok.png"), max_pixels=1000)


def test_a_folder_skips_a_bomb_with_a_warning_and_reads_the_rest(tmp_path):
    (tmp_path / "a_bomb.png").write_bytes(_png_header(30000, 30000))
    cv2.imwrite(str(tmp_path / "b.png"), digit_frame("3"))
    warnings = []
    src = FolderSource(tmp_path, warn=warnings.append)
    ok, frame = src.read()
    assert ok and frame.shape == (240, 320, 3) and src.current_name.endswith("b.png")
    assert len(warnings) == 1 and "a_bomb.png" in warnings[0] and "too large" in warnings[0]


def test_a_folder_video_holds_every_image_whatever_comes_first(tmp_path):
    cv2.imwrite(str(tmp_path / "a_dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b_strip.png"), np.full((200, 10000, 3), 255, np.uint8))
    cv2.imwrite(str(tmp_path / "c_page.png"), digit_frame("5", size=(640, 480)))
    w, h = FolderSource(tmp_path).frame_size
    # The 640x480 page keeps its full size, the strip its shape: neither takes the first image's.
    assert w >= 640 and h >= 480 and w / h <= 4 and max(w, h) <= 1920 and w % 2 == h % 2 == 0


def test_an_empty_source_or_a_pipe_is_refused(tmp_path):
    with pytest.raises(UserError, match="empty"):
        open_source("")  # would read the current folder
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="pipe"):  # would block inside OpenCV, deaf to Ctrl+C
        open_source(str(tmp_path / "fifo"))


@pytest.mark.parametrize("source, outputs, message", [
    ("v.avi", {"--record": "v.avi"}, "is the input"),
    ("x.png", {"--jsonl": "./x.png"}, "is the input"),
    ("v.avi", {"--jsonl": "o.mkv", "--record": "o.mkv"}, "same file"),
    ("photos", {"--jsonl": "photos/p.png"}, "one of the input images"),
])
def test_outputs_that_would_overwrite_an_input_are_refused(tmp_path, monkeypatch, source, outputs, message):
    monkeypatch.chdir(tmp_path)
    for name in ("v.avi", "x.png", "photos/p.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"precious")
    with pytest.raises(UserError, match=message):
        refuse_overwrites(source, outputs)
    refuse_overwrites(source, {flag: f"new{i}_" + path.replace("/", "_") for i, (flag, path) in enumerate(outputs.items())})
    assert all((tmp_path / n).read_bytes() == b"precious" for n in ("v.avi", "x.png", "photos/p.png"))


def test_a_very_wide_strip_reads_like_its_crop(mnist_dir):
    """Five MNIST digits 140 px tall on paper: the 1100x200 crop reads them, and so must the same
    crop in a 10000x200 strip (prepared as the app prepares frames)."""
    from backend.frame.pipeline import Pipeline
    from backend.model.recognizer import Recognizer, RecognizerConfig
    from backend.training.data import mnist

    test = mnist(str(mnist_dir), False)
    crop = np.full((200, 1100), 235, np.uint8)
    for k, d in enumerate([3, 1, 4, 1, 5]):
        i = [j for j in range(500) if int(test.targets[j]) == d][k]
        ink = 255 - cv2.resize(test.data[i].numpy(), (140, 140))
        crop[30:170, 80 + 190 * k:220 + 190 * k] = np.minimum(crop[30:170, 80 + 190 * k:220 + 190 * k], ink)
    crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    strip = np.full((200, 10000, 3), 235, np.uint8)
    strip[:, 4000:5100] = crop
    pipeline = Pipeline(Recognizer(None, RecognizerConfig(device="cpu")))
    assert "".join(pipeline.process(prepare_frame(crop)[0]).numbers) == "31415"
    assert "".join(pipeline.process(prepare_frame(strip)[0]).numbers) == "31415"
