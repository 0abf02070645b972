"""The browser app: uploads decoded safely and frames read (backend/live/web_reading.py), and the
page itself (backend/live/web.py), driven in Debian's headless Chromium through Selenium (never a
downloaded browser).

The browser tests start the app in-process on a free port, once for the module, on the shipped
models, and read pages of printed digits drawn here, so they need no MNIST, camera or network.
Without /usr/bin/chromium and /usr/bin/chromedriver they are skipped, unless
DIGITS_BROWSER_TESTS=required (CI installs both and sets it), where they fail instead.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import socket
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.errors import UserError
from backend.frame.detections import Detections
from backend.live import web_reading as web
from backend.live.overlay import HudInfo

# Gradio's own use of pandas warns on every request.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LINES = ["2024", "1357 869"]


def page_of_digits(lines: list[str] = LINES, height: int | None = None) -> np.ndarray:
    """A sheet of printed digits, one text line per entry: (H, 1200, 3) BGR uint8."""
    img = np.full((height or 180 * len(lines) + 80, 1200, 3), 245, np.uint8)
    for i, text in enumerate(lines):
        for j, ch in enumerate(text):
            if ch != " ":
                cv2.putText(img, ch, (80 + 105 * j, 170 + 180 * i), cv2.FONT_HERSHEY_SIMPLEX, 4.0, (30, 30, 30),
                            10, cv2.LINE_AA)
    return img


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height grey pixels but holds almost nothing (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Uploads that must be refused: name -> (file, words the message has)."""
    good = cv2.imencode(".jpg", page_of_digits())[1].tobytes()
    files = {"not_image.jpg": (b"hello, this is not an image\n" * 10, "cannot read"),
             "truncated.jpg": (good[:len(good) // 3], "cannot read"),
             "huge.png": (png_header(30000, 30000), "too large"),
             "big.png": (png_header(8000, 7000), "too large")}  # 56 MP, under Pillow's own limit
    out = {}
    for name, (data, words) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, words)
    return out


# --- decoding uploads -------------------------------------------------------------------------

def test_decode_upload_refuses_bad_files_with_one_line(tmp_path):
    for name, (path, words) in bad_files(tmp_path).items():
        with pytest.raises(UserError) as e:
            web.decode_upload(path)
        assert words in str(e.value) and "\n" not in str(e.value), name
    big = tmp_path / "big.jpg"
    big.write_bytes(cv2.imencode(".jpg", page_of_digits())[1].tobytes() + bytes(2 << 20))
    with pytest.raises(UserError, match="larger than 1 MB"):
        web.decode_upload(big, max_bytes=1 << 20)


def test_decode_upload_turns_the_photo_upright(tmp_path):
    from PIL import Image

    img = Image.fromarray(np.zeros((30, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to show
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "phone.jpg").write_bytes(buf.getvalue())
    assert web.decode_upload(tmp_path / "phone.jpg").shape == (80, 30, 3)


def test_picked_at_finds_the_box_under_the_click():
    boxes = np.array([[10, 10, 20, 30], [100, 10, 20, 30]])
    n = len(boxes)
    dets = Detections(boxes, np.array([1, 7]), np.ones(n, np.float32), np.eye(10, dtype=np.float32)[[1, 7]],
                          np.zeros((n, 7, 7), np.float32), np.zeros((n, 7, 7), np.float32), np.zeros((n, 28, 28), np.uint8))
    reading = web.Reading(dets, 0.5, {})
    assert web.picked_at(reading, 55, 12) == 1  # inside the second box, shown at half size
    assert web.picked_at(reading, 30, 50) == 0  # outside both: the nearest
    assert web.picked_at(None, 1, 1) is None


def test_webcam_reader_tracks_the_digits_frame_to_frame():
    models = web.Models({"fast": web.MODEL_FILES["fast"]})
    reader = web.Reader(models.pipeline("fast"), "webcam", track=True)
    frame = page_of_digits()
    for _ in range(4):  # a track shows once it has been seen in a few frames
        image, reading, lines = reader.read(frame, HudInfo(fps=10.0))
    assert lines == ["2024", "1357 869"] and image.shape == frame.shape
    ids = [d["track_id"] for d in reading.record["detections"]]
    assert len(ids) == 11 == len(set(ids))
    _, again, _ = reader.read(frame)
    assert [d["track_id"] for d in again.record["detections"]] == ids  # the same digits keep their tracks


# --- in the browser ---------------------------------------------------------------------------

def _browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        msg = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("DIGITS_BROWSER_TESTS") == "required":
            pytest.fail(msg)
        pytest.skip(msg)
    pytest.importorskip("selenium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    _browser_or_skip()
    serve = pytest.importorskip("backend.live.web").serve
    app = serve(web.Models(web.MODEL_FILES), port=_free_port(), block=False)
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def _wait(driver, cond, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def _text(driver, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, elem_id).text


def _open(driver, url: str, tab: str):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.XPATH, f"//button[@role='tab' and contains(., '{tab}')]"))[0].click()


def _answer(driver, elem_id: str, before: str = "") -> str:
    """The status text under a result once the request is answered (a reading or a refusal)."""
    def done(d):
        t = _text(d, elem_id)
        return t != before and re.search(r"\d+ digits? in \d+ ms|Cannot read|No digits", t) and t

    return _wait(driver, done)


def _upload(driver, path: Path) -> str:
    """Upload a file in the Upload tab; the status text once it is answered."""
    from selenium.webdriver.common.by import By

    before = _text(driver, "upload-status")
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#upload-file input[type=file]")).send_keys(str(path))
    return _answer(driver, "upload-status", before)


def _clear_upload(driver):
    """Clear the Upload tab's file, and wait until the page says so (a loaded machine answers late)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#upload-file button[aria-label='Clear']").click()
    _wait(driver, lambda d: _text(d, "upload-status").startswith("Upload a photo"))


@pytest.mark.slow
def test_page_loads_with_its_tabs(app_url, browser):
    from selenium.webdriver.common.by import By

    _open(browser, app_url, "About")
    assert browser.title == "Digits Transformer"
    tabs = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "button[role='tab']")]
    assert tabs[:4] == ["Upload", "Draw", "Webcam", "About"]
    about = _wait(browser, lambda d: _text(d, "about"))
    assert "attention rollout" in about and "484,018" in about and "159,162" in about


@pytest.mark.slow
def test_upload_shows_the_digits_then_refuses_bad_files_and_goes_on(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    good = tmp_path / "page.png"
    cv2.imwrite(str(good), page_of_digits())
    _open(browser, app_url, "Upload")
    status = _upload(browser, good)
    assert "11 digits" in status and re.search(r"by\s+default", status)
    assert status.splitlines()[-3:] == ["2024", "", "1357 869"]
    browser.find_element(By.XPATH, "//label[contains(., 'fast')]").click()  # the model switch reads it again
    status = _wait(browser, lambda d: re.search(r"by\s+fast", _text(d, "upload-status")) and _text(d, "upload-status"))
    assert status.splitlines()[-1] == "1357 869"
    # The first digit is picked for a closer look: its ten probabilities show.
    probs = _wait(browser, lambda d: _text(d, "upload-probs"))
    assert probs.splitlines()[:2] == ["Probabilities", "2"]  # the first digit picked: the 2 of 2024
    for name, (path, words) in bad_files(tmp_path).items():
        _clear_upload(browser)
        status = _upload(browser, path)
        assert "Cannot read this file" in status and words in status, (name, status)
    _clear_upload(browser)
    four = tmp_path / "four.png"
    cv2.imwrite(str(four), page_of_digits(["4"]))
    status = _upload(browser, four)
    assert "1 digit" in status and status.splitlines()[-1] == "4"


@pytest.mark.slow
def test_each_tab_keeps_its_own_results(app_url, browser, tmp_path):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    cv2.imwrite(str(first), page_of_digits(["31"]))
    cv2.imwrite(str(second), page_of_digits(["64"]))
    _open(browser, app_url, "Upload")
    assert _upload(browser, first).splitlines()[-1] == "31"
    tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        _open(browser, app_url, "Upload")
        assert _upload(browser, second).splitlines()[-1] == "64"
    finally:
        browser.close()
        browser.switch_to.window(tab)
    assert _text(browser, "upload-status").splitlines()[-1] == "31"


@pytest.mark.slow
def test_drawing_with_the_mouse_reads_the_digits(app_url, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(browser, app_url, "Draw")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#draw-pad button[aria-label='Brush']")).click()
    canvas = browser.find_elements(By.CSS_SELECTOR, "#draw-pad canvas")[-1]

    def stroke(points):  # offsets from the canvas centre, in page pixels
        chain = ActionChains(browser, duration=10).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
        for (x, y), (px, py) in zip(points[1:], points[:-1]):
            chain.move_by_offset(x - px, y - py)
        chain.release().perform()

    stroke([(-185, -90), (-195, -30), (-205, 30), (-215, 90)])  # a 1, slanted as written
    stroke([(-60, -90), (0, -90), (60, -90), (30, 0), (0, 90)])  # a 7
    # Read live: after the first stroke too; the second one's answer has both digits.
    status = _wait(browser, lambda d: "2 digits" in _text(d, "draw-status") and _text(d, "draw-status"))
    assert status.splitlines()[-1].replace(" ", "") == "17"
