"""Overlay: a pure function of the frame and readings; every layer toggles; ink stays visible."""
from __future__ import annotations

import numpy as np
import pytest

from app_fakes import digit_frame
from backend.live.overlay import (MIN_FONT, HudInfo, Layout, OverlayConfig, draw_overlay, heatmap_tints, hud_variants,
                                  place_label, text_size, ui_scale)
from backend.frame.detections import Detections

BOX = [60, 80, 50, 70]


def readings(n: int = 2, boxes=None) -> Detections:
    if boxes is None:
        boxes = [[60 + 80 * i, 80, 50, 70] for i in range(n)]
    boxes = np.array(boxes, np.int32).reshape(-1, 4)
    n = len(boxes)
    probs = np.full((n, 10), 0.01, np.float32)
    probs[:, 3] = 0.91
    attn = np.zeros((n, 7, 7), np.float32)
    attn[:, 2:5, 2:5] = 1.0  # the centre of the digit draws the attention
    crops = np.zeros((n, 28, 28), np.uint8)
    crops[:, 6:22, 10:18] = 255
    return Detections(boxes, np.full(n, 3), probs.max(1), probs, attn, attn.copy(), crops, np.arange(1, n + 1))


HUD = HudInfo(fps=24.0, timings={"detect": 3.0, "preprocess": 1.0, "model": 6.0, "draw": 2.0}, device="cpu",
              model="digits_vit.pt", recording="rec_001.mp4")


def region_changed(a: np.ndarray, b: np.ndarray, y0, y1, x0, x1) -> bool:
    return bool(np.any(a[y0:y1, x0:x1] != b[y0:y1, x0:x1]))


def test_draw_is_pure_and_keeps_shape():
    frame = digit_frame("33", size=(320, 240))
    before = frame.copy()
    out = draw_overlay(frame, readings(), ["33"], OverlayConfig(), HUD)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(frame, before)
    assert not np.array_equal(out, frame)


# (layer, region that only that layer draws on: y0, y1, x0, x1 in a 640x480 frame)
LAYERS = [
    ("boxes", (80, 150, 59, 62)),  # the left edge of the first box
    ("labels", (55, 79, 62, 100)),  # above the first box
    ("attention", (100, 130, 75, 95)),  # inside the first box
    ("numbers", (10, 60, 540, 630)),  # top right panel
    ("inset", (400, 470, 500, 630)),  # bottom right strip
    ("hud", (0, 40, 0, 200)),  # top left panel
]


@pytest.mark.parametrize("layer, region", LAYERS, ids=[name for name, _ in LAYERS])
def test_each_layer_toggles(layer, region):
    frame = np.full((480, 640, 3), 230, np.uint8)
    on = draw_overlay(frame, readings(), ["33"], OverlayConfig(), HUD)
    off = draw_overlay(frame, readings(), ["33"], OverlayConfig(**{layer: False}), HUD)
    assert region_changed(on, frame, *region), f"{layer} drew nothing where expected"
    assert region_changed(on, off, *region), f"turning {layer} off changed nothing"


def test_debug_and_help_views_change_the_picture():
    frame = digit_frame("3", size=(640, 480))
    mask = np.zeros((240, 320), np.uint8)
    mask[40:75, 30:55] = 255
    plain = draw_overlay(frame, readings(1), ["3"], OverlayConfig(), HUD)
    debug = draw_overlay(frame, readings(1), ["3"], OverlayConfig(debug=True), HUD, readings(1, [[300, 300, 20, 30]]), mask)
    helped = draw_overlay(frame, readings(1), ["3"], OverlayConfig(help=True), HUD)
    assert debug[100, 80].tolist() != plain[100, 80].tolist()  # mask pixels are painted
    assert debug[300, 300].tolist() != plain[300, 300].tolist()  # the rejected candidate is boxed
    assert region_changed(helped, plain, 200, 280, 250, 400)


def test_heatmap_keeps_ink_dark_and_tints_paper():
    frame = np.full((480, 640, 3), 230, np.uint8)
    frame[100:130, 80:90] = 20  # a stroke inside the first box, where attention is high
    out = draw_overlay(frame, readings(1), [], OverlayConfig(labels=False, boxes=False, inset=False, hud=False,
                                                            numbers=False), None)
    assert out[115, 85].max() < 100  # ink still reads as ink
    assert np.abs(out[115, 95].astype(int) - 230).max() > 30  # paper next to it is coloured


@pytest.mark.parametrize("size, boxes", [
    ((32, 24), [[0, 0, 30, 20]]),  # tiny frame
    ((640, 480), [[600, 450, 80, 80]]),  # box running off the frame
    ((640, 480), [[0, 0, 1, 1]]),  # degenerate box
    ((1920, 1080), [[100 + 40 * i, 100 + 20 * (i % 5), 30, 40] for i in range(40)]),  # many digits
], ids=["tiny", "off-frame", "degenerate", "many"])
def test_awkward_frames_and_boxes_draw_without_error(size, boxes):
    frame = np.full((size[1], size[0], 3), 200, np.uint8)
    out = draw_overlay(frame, readings(boxes=boxes), ["1234567890" * 4] * 8, OverlayConfig(help=True), HUD)
    assert out.shape == frame.shape


def test_empty_readings_draw_only_the_hud():
    frame = np.full((240, 320, 3), 200, np.uint8)
    empty = readings(boxes=[])
    out = draw_overlay(frame, empty, [], OverlayConfig(), HUD)
    assert region_changed(out, frame, 0, 30, 0, 100)
    assert not region_changed(out, frame, 120, 240, 0, 320)


# (side of the digit that the attention is on: rows, columns of the 7x7 map it covers)
HOT = {"left": np.s_[:, :3], "right": np.s_[:, 4:], "top": np.s_[:3], "bottom": np.s_[4:]}


def edge(side: str, box, frac: float):
    """The outer `frac` of a box (x, y, w, h) on one side, as a slice of the frame."""
    x, y, w, h = box
    d = max(1, round(frac * (w if side in ("left", "right") else h)))
    return {"left": np.s_[y:y + h, x:x + d], "right": np.s_[y:y + h, x + w - d:x + w],
            "top": np.s_[y:y + d, x:x + w], "bottom": np.s_[y + h - d:y + h, x:x + w]}[side]


OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


@pytest.mark.parametrize("box", [(60, 80, 50, 70), (33, 41, 91, 37)], ids=["tall", "wide"])
@pytest.mark.parametrize("side", list(HOT))
def test_heatmap_tints_where_the_model_looked_and_keeps_ink_dark(side, box):
    """Attention on one side of the digit colours the paper there and leaves the far side and
    everything outside the box as it was; a stroke under the attention stays dark."""
    frame = np.full((240, 320, 3), 230, np.uint8)
    x, y, w, h = box
    frame[y:y + h, x + w // 2] = 20  # a vertical stroke through the middle
    frame[y + h // 2, x:x + w] = 20  # and a horizontal one
    attn = np.zeros((7, 7), np.float32)
    attn[HOT[side]] = 1.0
    out = frame.copy()
    heatmap_tints(out, np.array([box]), attn[None], 0.55)
    changed = np.abs(out.astype(int) - frame).max(axis=2)
    inside = np.zeros(frame.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    assert not changed[~inside].any()  # nothing outside the box
    assert np.median(changed[edge(side, box, 0.1)]) > 30  # the paper the model looked at is coloured
    assert not changed[edge(OPPOSITE[side], box, 0.2)].any()  # the paper it ignored is untouched
    ink = frame[..., 0] == 20
    assert out[ink].max() < 100  # strokes still read as ink, under the hottest attention too


@pytest.mark.parametrize("box", [(60, 80, 50, 70), (33, 41, 91, 37)], ids=["tall", "wide"])
def test_heatmap_lays_the_map_over_the_digit_as_the_model_saw_it(box):
    """The map covers the 28x28 model input, whose digit fills the central 20x20: attention on the
    ring of cells around it lies mostly outside the digit's box and barely tints it (measured: 29
    grey levels at most, 127 were the map stretched over the box)."""
    frame = np.full((240, 320, 3), 230, np.uint8)
    attn = np.zeros((7, 7), np.float32)
    attn[[0, -1]] = attn[:, [0, -1]] = 1.0
    out = frame.copy()
    heatmap_tints(out, np.array([box]), attn[None], 0.55)
    assert np.abs(out.astype(int) - frame).max() < 40


def test_boxes_tinted_at_once_as_one_after_another():
    """Boxes that overlap none before them are tinted side by side; one that overlaps an earlier
    box must see it tinted: the same pixels as tinting each box in turn, boxes cut by the
    frame's edge and too small to tint included."""
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([(5, 5, 30, 40), (40, 8, 25, 30), (50, 20, 30, 35), (100, 60, 40, 70), (-5, 90, 20, 25),
                      (120, 10, 1, 30), (60, 15, 20, 20)])
    attns = rng.random((len(boxes), 4, 4)).astype(np.float32)
    together, in_turn = frame.copy(), frame.copy()
    heatmap_tints(together, boxes, attns, 0.55)
    for box, attn in zip(boxes, attns):
        heatmap_tints(in_turn, box[None], attn[None], 0.55)
    assert np.array_equal(together, in_turn)
    assert (together != frame).any(axis=2).sum() > 3000


# --- layout: labels and panels never hide a digit ---------------------------------------------

def intersects(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def box_rects(boxes):
    return [(x, y, x + w + 1, y + h + 1) for x, y, w, h in np.asarray(boxes).tolist()]  # the drawn line included


def dense_page():
    """A 1280x960 sheet with about 200 small digits in rows and free paper below them."""
    from backend.frame import synth

    cfg = synth.SceneConfig(width=1280, height=960, min_digits=200, max_digits=200, min_height=28, max_height=34,
                            closeup_p=0, light_on_dark_p=0, table_p=0, perspective=0.0, shadow_p=0, ruled_p=0)
    return synth.render_scene(np.random.default_rng(1), *synth.demo_digits(), cfg)


BUSY_HUD = HudInfo(fps=24.0, timings={"detect": 3.0, "preprocess": 1.0, "model": 6.0, "draw": 2.0},
                   device="cpu onnx", model="digits_vit.pt", recording="recordings/rec_001.mp4", paused=True,
                   status="snapshot saved: snapshots/snap_001.png")


def test_the_model_input_strip_is_as_wide_as_its_title_where_room_is_short():
    """Digits across a portrait frame but for a strip down its right side: one crop fits there,
    and its panel is still as wide as its title (which ran past it and off the frame)."""
    frame = np.full((1280, 960, 3), 200, np.uint8)
    dets = readings(boxes=np.array([[x, y, 60, 90] for x in range(10, 880, 80) for y in range(10, 1200, 110)]))
    layout = Layout(frame.shape, dets.boxes)
    draw_overlay(frame, dets, ["1"], OverlayConfig(), HUD, layout=layout)
    x0, _, x1, _ = layout.panels["inset"]
    assert x1 - x0 >= text_size("input", max(MIN_FONT * 0.9, 0.4 * ui_scale(frame)))[0] and x1 <= frame.shape[1]


@pytest.mark.parametrize("help_on", [False, True], ids=["plain", "help"])
def test_dense_page_panels_and_labels_cover_no_digit(help_on):
    page = dense_page()
    assert len(page.boxes) >= 150
    dets = readings(boxes=page.boxes)
    layout = Layout(page.image.shape, dets.boxes)
    lines = [" ".join("".join(map(str, page.labels[n])) for n in line) for line in page.lines]
    draw_overlay(page.image, dets, lines, OverlayConfig(help=help_on), BUSY_HUD, layout=layout)
    expected = {"hud", "numbers", "status", "inset"} | ({"help"} if help_on else set())
    assert set(layout.panels) == expected
    boxes = box_rects(dets.boxes)
    for name, panel in layout.panels.items():
        assert not any(intersects(panel, b) for b in boxes), f"{name} covers a digit"
        assert not any(intersects(panel, lab) for lab in layout.labels), f"{name} covers a label"
        assert not any(intersects(panel, other) for n, other in layout.panels.items() if n != name)
    assert len(layout.labels) >= 0.8 * len(boxes)  # crowded rows still label most digits
    for i, lab in enumerate(layout.labels):
        assert not any(intersects(lab, b) for b in boxes), "a label covers a digit"
        assert not any(intersects(lab, other) for other in layout.labels[i + 1:]), "two labels overlap"


def test_labels_on_a_small_strip_stay_legible_and_apart():
    """A 640x67 photo of a row of digits: labels keep a legible size and their pieces apart,
    and the pause state still shows."""
    boxes = [[12 + 62 * i, 22, 22, 38] for i in range(10)]
    frame = np.full((67, 640, 3), 200, np.uint8)
    dets = readings(boxes=boxes)
    layout = Layout(frame.shape, dets.boxes)
    draw_overlay(frame, dets, ["0123456789"], OverlayConfig(), BUSY_HUD, layout=layout)
    assert "hud" in layout.panels and len(layout.labels) == 10
    for lab in layout.labels:
        assert not any(intersects(lab, b) for b in box_rects(boxes))
    placed = place_label(Layout(frame.shape, dets.boxes[:1]), dets.boxes[0], 5, 0.96, 0.5)
    (x0, y0, x1, y1), parts, th = placed
    assert [t for t, _ in parts] == ["5", "96%"] and min(f for _, f in parts) >= MIN_FONT


def test_a_close_up_gets_its_label_beside_it_or_inside_it_when_it_fills_the_frame():
    """A close-up leaves no room above or below its box: the label goes beside the box's top,
    and when the box fills the whole frame, inside its top corner, never off the frame."""
    for frame_wh, box, where in (((382, 286), [104, 7, 176, 273], "beside"), ((240, 240), [0, 0, 240, 240], "inside")):
        frame = np.full((frame_wh[1], frame_wh[0], 3), 200, np.uint8)
        dets = readings(boxes=[box])
        layout = Layout(frame.shape, dets.boxes)
        draw_overlay(frame, dets, ["4"], OverlayConfig(), BUSY_HUD, layout=layout)
        assert len(layout.labels) == 1
        (x0, y0, x1, y1), (bx, by, bw, bh) = layout.labels[0], box
        assert 0 <= x0 < x1 <= frame_wh[0] and 0 <= y0 < y1 <= frame_wh[1]
        inside = bx <= x0 and x1 <= bx + bw and by <= y0 and y1 <= by + bh
        assert inside == (where == "inside") and (inside or x1 <= bx or x0 >= bx + bw)
        text = [*layout.panels.values(), *layout.labels]  # over the digit if need be, never over each other
        assert not any(intersects(a, b) for i, a in enumerate(text) for b in text[i + 1:])


def test_the_hud_gives_a_photo_its_stage_times_and_no_rate():
    timings = {"detect": 3.0, "preprocess": 1.0, "model": 6.0}
    photo = [text for text, _, _ in hud_variants(HudInfo(timings=timings, device="cpu"), 5, 1.0)[0][0]]
    video = [text for text, _, _ in hud_variants(HudInfo(fps=24.0, timings=timings, device="cpu"), 5, 1.0)[0][0]]
    assert photo[0] == "detect 3.0   preprocess 1.0   model 6.0 ms" and not any("FPS" in t for t in photo)
    assert video[0].startswith("FPS 24.0    detect 3.0")
