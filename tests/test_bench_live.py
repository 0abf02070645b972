"""The hard live benchmark: its clips are reproducible with truth in every frame, and it scores."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from backend.bench import bench_live
from backend.bench import real_pages
from backend.bench.real_pages import SETS, real_page
from backend.bench.live_clips import Glyph, cut, make_clip
from backend.frame.detections import box_iou
from backend.live.tracking import TrackerConfig


def font_glyphs() -> list[Glyph]:
    """Stand-ins for the photos' digits: each digit drawn in a font, tight to its ink."""
    out = []
    for d in range(10):
        img = np.zeros((70, 50), np.uint8)
        cv2.putText(img, str(d), (5, 60), cv2.FONT_HERSHEY_SIMPLEX, 2.0, 255, 5, cv2.LINE_AA)
        ys, xs = np.nonzero(img)
        out.append(Glyph(img[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32) / 255, d, "font"))
    return out


GLYPHS = font_glyphs()


@pytest.mark.parametrize("index", [8, 11])  # a digit rewritten; everything at once
def test_clips_are_reproducible_with_boxes_and_labels_in_every_frame(index):
    a, b = make_clip(GLYPHS, index, frames=30), make_clip(GLYPHS, index, frames=30)
    assert len(a.frames) == 30 and all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    for boxes, labels in zip(a.boxes, a.labels):
        assert len(boxes) == len(labels) > 0
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 640).all()
        assert (boxes[:, 1] + boxes[:, 3] <= 480).all()
    [rewrite] = [e for e in a.events if e.kind == "rewrite"]
    t = rewrite.frame
    assert np.isnan(rewrite.boxes[t - 1]).all() and rewrite.label in a.labels[t]
    before = int(np.argmax(box_iou(rewrite.boxes[t][None], a.boxes[t - 1])[0]))
    assert a.labels[t - 1][before] != rewrite.label  # the same place, another digit


def test_the_benchmark_scores_a_clip(pipeline):
    score = bench_live.load_score(bench_live.SHARED / "tools" / "score.py")
    clip = make_clip(GLYPHS, 9, frames=12)
    fig = bench_live.run([clip], pipeline, score, TrackerConfig())
    assert fig.frames == 12 - bench_live.WARMUP and fig.pairs == fig.frames - 1
    assert 0 <= fig.correct <= fig.digits and 0 < fig.calls <= fig.candidates
    assert "accuracy" in fig.line("tracked") and len(fig.readings) == 12


def test_the_frames_after_a_cut_to_another_sheet_are_scored_apart(pipeline):
    score = bench_live.load_score(bench_live.SHARED / "tools" / "score.py")
    first, then = make_clip(GLYPHS, 9, frames=8), make_clip(GLYPHS, 2, frames=8)
    clip = cut(first, then)
    assert clip.cut == 8 and len(clip.frames) == 16 and clip.labels[8] is then.labels[0]
    fig = bench_live.run([clip], pipeline, score, TrackerConfig())
    assert fig.cut_digits == sum(len(labels) for labels in then.labels)  # every frame after the cut
    assert 0 <= fig.cut_correct <= fig.cut_digits and "frames from a cut" in fig.line("tracked")
    plain = bench_live.run([first], pipeline, score, TrackerConfig())
    assert plain.cut_digits == 0 and "frames from a cut" not in plain.line("tracked")


@pytest.mark.parametrize("kind", range(len(SETS)))
def test_real_pages_hold_lines_of_digits_with_their_boxes(kind):
    size, heights, ruled, blur = SETS[kind]
    frame, boxes, labels = real_page(GLYPHS, np.random.default_rng(kind), size, heights, ruled, blur)
    again = real_page(GLYPHS, np.random.default_rng(kind), size, heights, ruled, blur)
    assert np.array_equal(frame, again[0]) and frame.shape == (size[1], size[0], 3)
    assert len(boxes) == len(labels) >= 100  # a page, hundreds of digits
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= size[0]).all()
    assert (boxes[:, 1] + boxes[:, 3] <= size[1]).all()
    assert heights[0] - 1 <= np.median(boxes[:, 3]) <= 1.1 * heights[1]
    iou = box_iou(boxes, boxes) - np.eye(len(boxes))
    assert iou.max() < 0.3  # side by side, not on top of each other
    ink = frame[..., 0] < np.median(frame[..., 0]) - 40
    for x, y, w, h in boxes[::7]:  # each box holds its digit's ink
        assert ink[y:y + h, x:x + w].any()


def test_real_pages_without_the_photos_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no .*labels.tsv"):
        real_pages.main(["--realworld", str(tmp_path)])
