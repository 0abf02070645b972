"""Tracking: confirmed before shown, held through brief gaps, smoothed, and no model work redone."""
from __future__ import annotations

import numpy as np
import pytest

from backend.frame.detections import Detections
from backend.live.tracking import Tracker, TrackerConfig, box_iou, match_boxes, page_shift


def dets(boxes, probs, crops=None) -> Detections:
    boxes = np.asarray(boxes, np.int32).reshape(-1, 4)
    probs = np.asarray(probs, np.float32).reshape(-1, 10)
    n = len(boxes)
    g = np.zeros((n, 4, 4), np.float32)
    crops = np.zeros((n, 28, 28), np.uint8) if crops is None else np.asarray(crops, np.uint8).reshape(n, 28, 28)
    return Detections(boxes, probs.argmax(1).astype(np.int64), probs.max(1), probs, g, g.copy(), crops)


NONE = dets([], [])


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


def changes(labels: list[int]) -> float:
    """Share of consecutive frames whose label differs."""
    return sum(a != b for a, b in zip(labels, labels[1:])) / (len(labels) - 1)


def shown(tr: Tracker, boxes, digits, rejected=None) -> list[int]:
    return tr.update(dets(boxes, [onehot(d) for d in digits]), rejected).digits.tolist()


def test_box_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]])
    b = np.array([[5, 0, 10, 10], [300, 300, 5, 5]])
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[0, 1] == 0 and iou[1, 0] == 0
    assert match_boxes(a, b, 0.25, 0.6) == [(0, 0)]
    # The best pair first: prev 1 takes cur 0 (it overlaps more), prev 0 the one left near it.
    prev = np.array([[0, 0, 20, 20], [6, 0, 20, 20]])
    cur = np.array([[8, 0, 20, 20], [-4, 0, 20, 20]])
    assert sorted(match_boxes(prev, cur, 0.25, 0.6)) == [(0, 1), (1, 0)]


def test_a_new_digit_shows_once_confirmed_and_one_frame_specks_never():
    tr = Tracker(TrackerConfig(min_hits=3))
    box = [[10, 10, 20, 30]]
    assert [shown(tr, box, [5]) for _ in range(4)] == [[], [], [5], [5]]
    speck = [[200, 10, 8, 12]]
    for _ in range(5):  # a speck seen every other frame: each sighting is a new, unconfirmed track
        assert shown(tr, box + speck, [5, 1]) == [5]
        assert shown(tr, box, [5]) == [5]


def test_a_missed_digit_keeps_its_place_for_a_few_frames_then_goes():
    tr = Tracker(TrackerConfig(min_hits=2, max_missed=2))
    both = dets([[10, 10, 20, 30], [40, 10, 20, 30]], [onehot(4), onehot(2)])
    for _ in range(5):
        out = tr.update(both)
    tid = int(out.track_ids[1])
    for _ in range(2):  # the 2 covered by a finger
        out = tr.update(dets([[10, 10, 20, 30]], [onehot(4)]))
        assert sorted(out.digits.tolist()) == [2, 4] and [40, 10, 20, 30] in out.boxes.tolist()
    out = tr.update(dets([[10, 10, 20, 30], [41, 10, 20, 30]], [onehot(4), onehot(2)]))
    assert tid in out.track_ids.tolist()  # back under the same track
    for _ in range(3):
        out = tr.update(dets([[10, 10, 20, 30]], [onehot(4)]))
    assert out.digits.tolist() == [4]


def test_a_track_just_confirmed_is_not_held():
    """What a finger's edge looks like for a few frames must not linger once it is gone."""
    tr = Tracker(TrackerConfig(min_hits=2, max_missed=5))
    edge = [[100, 10, 8, 30]]
    assert [shown(tr, edge, [1]) for _ in range(2)] == [[], [1]]
    assert shown(tr, [], []) == []


def test_steady_digit_does_not_flicker_but_raw_readings_do():
    rng = np.random.default_rng(0)
    smoothed, raw = Tracker(TrackerConfig(min_hits=1)), Tracker(TrackerConfig(alpha=1.0, switch_margin=0.0, min_hits=1))
    labels, seen = [], []
    for t in range(200):
        d = dets([[50 + t % 3, 40, 30, 45]], [noisy_probs(rng, 3, 8)])
        labels.append(int(smoothed.update(d).digits[0]))
        seen.append(int(raw.update(d).digits[0]))
    assert changes(seen) > 0.2
    assert changes(labels) < 0.02
    assert labels.count(3) > 0.97 * len(labels)


def test_a_rewritten_digit_shows_its_new_value_within_a_few_frames():
    tr = Tracker()
    for _ in range(5):
        shown(tr, [[10, 10, 20, 30]], [5])
    labels = [shown(tr, [[10, 10, 20, 30]], [9])[0] for _ in range(6)]
    assert labels.index(9) <= 3 and labels[-1] == 9


def test_another_sheet_is_read_afresh_from_its_second_frame():
    """A cut to another sheet: where most digits shown read as the same others two frames running,
    they show those at once, not after the smoothing's frames, and the last sheet's other digits
    go instead of being held in place."""
    places = [[10 + 30 * i, 10, 20, 30] for i in range(4)]
    tr = Tracker()
    for _ in range(6):
        shown(tr, places, [1, 2, 3, 4])
    assert shown(tr, places[:3], [7, 8, 9]) == [1, 2, 3, 4]  # one frame: as likely a bad one
    assert shown(tr, places[:3], [7, 8, 9]) == [7, 8, 9]
    assert not tr.neighbours


def test_contradictions_short_of_another_sheet_keep_the_smoothing():
    places = [[10 + 30 * i, 10, 20, 30] for i in range(4)]
    for frames in ([[7, 8, 3, 4]] * 3,  # two of four digits rewritten
                   [[7, 8, 9, 0], [5, 6, 7, 8], [1, 2, 3, 4]],  # a shaken page, read as other digits each frame
                   [[7, 8, 9, 0], [1, 2, 3, 4], [7, 8, 9, 0]]):  # ... or every other frame
        tr = Tracker()
        for _ in range(6):
            shown(tr, places, [1, 2, 3, 4])
        assert [shown(tr, places, f) for f in frames] == [[1, 2, 3, 4]] * 3


def test_a_page_matched_a_digit_off_is_not_another_sheet():
    """A row moved by exactly its digits' spacing, a digit coming into view where the first was:
    standing still fits the boxes as well as the move, so each track is matched to its neighbour
    and contradicted, but the digits are all where the move takes them: the smoothing keeps the
    labels, as for a shaken page, and none is dropped."""
    row = [[10 + 30 * i, 10, 20, 30] for i in range(8)]
    tr = Tracker()
    for _ in range(6):
        shown(tr, row[:7], [1, 2, 3, 4, 5, 6, 7])
    for _ in range(2):
        assert shown(tr, row, [9, 1, 2, 3, 4, 5, 6, 7]) == [1, 2, 3, 4, 5, 6, 7]


def test_track_ids_follow_moving_digits_and_new_ones_get_new_ids():
    tr = Tracker(TrackerConfig(min_hits=1))
    ids = []
    for t in range(10):
        out = tr.update(dets([[10 + 4 * t, 10, 20, 30], [200 - 3 * t, 50, 20, 30]], [onehot(1), onehot(7)]))
        ids.append(out.track_ids.tolist())
    assert all(i == ids[0] for i in ids) and len(set(ids[0])) == 2
    out = tr.update(dets([[10 + 40, 10, 20, 30], [170, 50, 20, 30], [400, 300, 20, 30]], [onehot(1), onehot(7), onehot(2)]))
    assert out.track_ids[:2].tolist() == ids[0] and out.track_ids[2] not in ids[0]


def test_a_low_confidence_frame_continues_a_track_but_never_starts_one():
    tr = Tracker(TrackerConfig(min_hits=1, max_missed=0))
    tr.update(dets([[10, 10, 20, 30]], [onehot(6, 0.95)]))
    weak = dets([[10, 10, 20, 30]], [onehot(6, 0.3)])
    out = tr.update(NONE, rejected=weak)
    assert out.digits.tolist() == [6] and out.confidence[0] > 0.5
    lonely = dets([[300, 10, 20, 30]], [onehot(2, 0.3)])
    assert tr.update(NONE, rejected=lonely).digits.tolist() == [] and tr.tracks == []


def crop(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28)).astype(np.uint8)


def test_reuse_skips_unchanged_crops_of_confident_tracks_only():
    cfg = TrackerConfig(max_age=4, max_crop_change=0.05, reuse_confidence=0.8)
    tr = Tracker(cfg)
    box = np.array([[10, 10, 20, 30]])
    c = crop(0)
    known, _ = tr.reuse(box, c[None])
    assert not known.any()  # nothing tracked yet
    tr.update(dets(box, [onehot(7, 0.95)], [c]))
    slightly = np.clip(c.astype(int) + 3, 0, 255)
    known, cached = tr.reuse(box, slightly[None])
    assert known.tolist() == [True] and cached.digits.tolist() == [7] and cached.probs.shape == (1, 10)
    assert not tr.reuse(box, crop(1)[None])[0].any()  # rewritten: a different crop
    assert not tr.reuse(box + 200, c[None])[0].any()  # somewhere else: not this track
    # Reused frames age the prediction: it is classified afresh after max_age frames.
    ages = []
    for _ in range(6):
        known, cached = tr.reuse(box, c[None])
        ages.append(bool(known[0]))
        tr.update(dets(box, cached.probs if known[0] else [onehot(7, 0.96)], [c]))
    assert ages == [True, True, True, False, True, True]
    unsure = Tracker(cfg)
    unsure.update(dets(box, [onehot(7, 0.6)], [c]))
    assert not unsure.reuse(box, c[None])[0].any()


def test_a_page_of_tracks_due_together_is_read_again_a_share_at_a_time():
    cfg = TrackerConfig(max_age=4, min_hits=1)
    tr = Tracker(cfg)
    boxes = np.array([[10 + 30 * (k % 20), 10 + 50 * (k // 20), 20, 30] for k in range(40)])
    crops = np.repeat(crop(0)[None], 40, axis=0)
    tr.update(dets(boxes, [onehot(7, 0.95)] * 40, crops))
    read = []
    for _ in range(8):
        known, cached = tr.reuse(boxes, crops)
        read.append(int((~known).sum()))
        probs = np.repeat(onehot(7, 0.96)[None], 40, axis=0)  # what the model says of those read again
        probs[known] = cached.probs
        tr.update(dets(boxes, probs, crops))
    # 40 tracks, all due after 4 frames: at most twice their share (40 / 4) a frame, each in turn.
    assert read[:3] == [0, 0, 0] and max(read) == 20 and sum(read) >= 40


def test_a_shaking_page_keeps_its_track_ids():
    row = np.array([[40 * k + 10, 50, 24, 34] for k in range(5)])
    moved = row + [30, 5, 0, 0]  # further than a digit's width: each box lands nearer its neighbour
    assert page_shift(row, moved).tolist() == [30, 5]
    tr = Tracker(TrackerConfig(min_hits=1))
    first = tr.update(dets(row, [onehot(k) for k in range(5)]))
    out = tr.update(dets(moved, [onehot(k) for k in range(5)]))
    assert dict(zip(out.digits.tolist(), out.track_ids.tolist())) == dict(zip(first.digits.tolist(),
                                                                              first.track_ids.tolist()))


def test_a_shaking_page_of_200_digits_keeps_its_track_ids():
    # 10 lines of 20 handwritten digits 30 px tall, 28-44 px apart, each box a pixel or two off
    # from frame to frame.
    rng = np.random.default_rng(0)
    x = 40 + np.cumsum(rng.integers(28, 45, (10, 20)), axis=1)
    page = np.array([[x[r, k], 40 + 60 * r + rng.integers(-4, 5), rng.integers(18, 27), 30]
                     for r in range(10) for k in range(20)])
    def shot(dx, dy):
        return page + [dx, dy, 0, 0] + np.c_[rng.integers(-1, 2, (200, 2)), rng.integers(-1, 2, (200, 2))]
    first = shot(0, 0)
    for move in ((8, -5), (47, 22), (-60, 35)):  # up to 2.3 digit heights, beyond its neighbour
        assert np.abs(page_shift(first, shot(*move)) - move).max() <= 3  # boxes a pixel or two off in each
    assert page_shift(first, shot(0, 0)).tolist() == [0, 0]
    assert page_shift(first, shot(130, 0)).tolist() == [0, 0]  # over 4 heights: not told from a neighbour's place
    other = np.c_[rng.uniform(0, 800, (200, 2)), rng.integers(22, 30, (200, 2))]  # another sheet
    assert page_shift(first, other).tolist() == [0, 0]
    tr = Tracker(TrackerConfig(min_hits=1))
    labels = [onehot(k % 10) for k in range(200)]
    ids = tr.update(dets(first, labels)).track_ids
    for move in ((20, 10), (-15, 30), (25, -20)):
        out = tr.update(dets(shot(*move), labels))
        assert len(out) == 200 and sorted(out.track_ids.tolist()) == sorted(ids.tolist())


def test_a_pair_read_in_halves_keeps_the_tracks_of_its_halves():
    tr = Tracker(TrackerConfig(min_hits=1))
    row = [[10 + 40 * k, 50, 24, 34] for k in range(4)]
    whole, halves = [[200, 50, 30, 34]], [[200, 50, 14, 34], [216, 50, 14, 34]]
    ids = tr.update(dets(row + halves, [onehot(k) for k in range(6)])).track_ids
    moved = np.array(row + whole) + [3, 1, 0, 0]
    tr.reuse(moved, np.zeros((5, 28, 28), np.uint8))  # the pair whole, as detection cut it out
    rematch = []
    real = tr._match
    tr._match = lambda b: rematch.append(b) or real(b)
    out = tr.update(dets(np.array(row + halves) + [3, 1, 0, 0], [onehot(k) for k in range(6)]))  # read in halves
    assert rematch == [] and sorted(out.track_ids.tolist()) == sorted(ids.tolist())


def test_update_takes_over_the_match_reuse_made_of_the_same_candidates():
    rng = np.random.default_rng(0)
    row = np.array([[40 * k + 10, 50, 24, 34] for k in range(6)])
    low = [1, 3]  # candidates the model is not sure of: update sees them after the others
    cached, fresh = Tracker(TrackerConfig(min_hits=2)), Tracker(TrackerConfig(min_hits=2))
    matched = []
    real = cached._match_again
    for t in range(12):
        boxes = row + np.r_[rng.integers(-6, 7, 2), 0, 0]
        probs = np.array([onehot(k, 0.3 if k in low else 0.95) for k in range(6)])
        ok = np.array([k not in low for k in range(6)])
        cached.reuse(boxes, np.zeros((6, 28, 28), np.uint8))
        cached._match_again = lambda b: matched.append(cached._matched is not None) or real(b)
        a = cached.update(dets(boxes[ok], probs[ok]), dets(boxes[~ok], probs[~ok]))
        del cached._match_again
        b = fresh.update(dets(boxes[ok], probs[ok]), dets(boxes[~ok], probs[~ok]))
        assert np.array_equal(a.boxes, b.boxes) and a.digits.tolist() == b.digits.tolist()
        assert (a.track_ids is None and b.track_ids is None) or a.track_ids.tolist() == b.track_ids.tolist()
    assert all(matched[1:])  # every frame after the first had reuse's match to take over
