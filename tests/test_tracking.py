"""Tracking and smoothing: steady digits keep their label, new ones show at once, ids persist."""
from __future__ import annotations

import numpy as np
import pytest

from backend.frame.detections import Detections
from backend.live.tracking import Tracker, TrackerConfig, box_iou, flicker_rate, match_boxes


def dets(boxes, probs) -> Detections:
    boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
    probs = np.asarray(probs, np.float32).reshape(-1, 10)
    n = len(boxes)
    g = np.zeros((n, 4, 4), np.float32)
    return Detections(boxes, probs.argmax(1).astype(np.int64), probs.max(1), probs, g, g.copy(),
                      np.zeros((n, 28, 28), np.uint8))


def onehot(d: int, p: float = 0.9) -> np.ndarray:
    v = np.full(10, (1 - p) / 9, np.float32)
    v[d] = p
    return v


def noisy_probs(rng, true: int, rival: int) -> np.ndarray:
    """A crop that is a 3 on average but reads as its rival in about a third of the frames."""
    v = np.full(10, 0.01, np.float32)
    a = rng.uniform(0.3, 0.7)
    v[true], v[rival] = a, 0.92 - a
    return v


def test_box_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]])
    b = np.array([[5, 0, 10, 10], [300, 300, 5, 5]])
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[0, 1] == 0 and iou[1, 0] == 0
    assert match_boxes(a, b, 0.25, 0.6) == [(0, 0)]


def test_steady_digit_does_not_flicker_but_raw_readings_do():
    rng = np.random.default_rng(0)
    smoothed, raw = Tracker(), Tracker(TrackerConfig(alpha=1.0, switch_margin=0.0))
    shown, seen = [], []
    for t in range(200):
        d = dets([[50 + t % 3, 40, 30, 45]], [noisy_probs(rng, 3, 8)])
        shown.append(int(smoothed.update(d).digits[0]))
        seen.append(int(raw.update(d).digits[0]))
    assert flicker_rate([seen]) > 0.2
    assert flicker_rate([shown]) < 0.02
    assert shown.count(3) > 0.97 * len(shown)


def test_new_digit_shows_at_once_and_a_rewritten_one_within_a_few_frames():
    tr = Tracker()
    first = tr.update(dets([[10, 10, 20, 30]], [onehot(5)]))
    assert first.digits.tolist() == [5]
    labels = [int(tr.update(dets([[10, 10, 20, 30]], [onehot(9)])).digits[0]) for _ in range(6)]
    assert labels.index(9) <= 3 and labels[-1] == 9


def test_track_ids_follow_moving_digits_and_new_ones_get_new_ids():
    tr = Tracker()
    ids = []
    for t in range(10):
        out = tr.update(dets([[10 + 4 * t, 10, 20, 30], [200 - 3 * t, 50, 20, 30]], [onehot(1), onehot(7)]))
        ids.append(out.track_ids.tolist())
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 2
    out = tr.update(dets([[10 + 40, 10, 20, 30], [170, 50, 20, 30], [400, 300, 20, 30]], [onehot(1), onehot(7), onehot(2)]))
    assert out.track_ids[:2].tolist() == ids[0] and out.track_ids[2] not in ids[0]


def test_tracks_survive_a_brief_gap_then_expire():
    tr = Tracker(TrackerConfig(max_missed=2))
    tid = int(tr.update(dets([[10, 10, 20, 30]], [onehot(4)])).track_ids[0])
    tr.update(dets([], []))
    assert int(tr.update(dets([[11, 10, 20, 30]], [onehot(4)])).track_ids[0]) == tid
    for _ in range(3):
        tr.update(dets([], []))
    assert int(tr.update(dets([[11, 10, 20, 30]], [onehot(4)])).track_ids[0]) != tid


def test_a_low_confidence_frame_continues_a_track_but_never_starts_one():
    tr = Tracker()
    tr.update(dets([[10, 10, 20, 30]], [onehot(6, 0.95)]))
    weak = dets([[10, 10, 20, 30]], [onehot(6, 0.3)])
    out = tr.update(dets([], []), rejected=weak)
    assert out.digits.tolist() == [6] and out.confidence[0] > 0.5
    lonely = dets([[300, 10, 20, 30]], [onehot(2, 0.3)])
    assert len(tr.update(dets([], []), rejected=lonely)) == 0


def test_flicker_rate_counts_changes_and_gaps():
    assert flicker_rate([[1, 1, 1, 1]]) == 0.0
    assert flicker_rate([[1, 2, 1, 2], [3, 3]]) == pytest.approx(3 / 4)
    assert flicker_rate([[1, -1, 1]]) == 1.0
