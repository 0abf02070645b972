"""Stable readings over time: match digit boxes frame to frame and smooth their probabilities.

A steady digit must not flicker between labels because one frame's crop came out a little
different, yet a new digit (or a digit rewritten in place) must show within a few frames. Each
track keeps an exponential moving average of its class probabilities; the label it shows changes
only when another class leads the average by a small margin (hysteresis). Matching is greedy by
box overlap (IoU), falling back to centre distance for small, fast-moving boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from backend.frame.detections import Detections, box_iou


@dataclass
class TrackerConfig:
    alpha: float = 0.3  # weight of the newest frame in the probability average (1.0 = no smoothing)
    switch_margin: float = 0.15  # another class must lead the shown one by this much to replace it
    min_iou: float = 0.25  # boxes overlapping at least this much are the same digit
    max_centre_dist: float = 0.6  # ...or centres closer than this fraction of the box diagonal
    max_missed: int = 5  # frames a track survives without a detection (occlusion, motion blur)
    min_confidence: float = 0.5  # smoothed confidence below this is not shown as a digit


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # (4,) x, y, w, h of the latest detection
    probs: np.ndarray  # (10,) smoothed probabilities
    digit: int  # the label shown (changes with hysteresis)
    missed: int = 0  # consecutive frames without a matching detection


def match_boxes(prev: np.ndarray, cur: np.ndarray, min_iou: float, max_centre_dist: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of previous boxes to current ones -> list of (prev_i, cur_j)."""
    if len(prev) == 0 or len(cur) == 0:
        return []
    iou = box_iou(prev, cur)
    pc = prev[:, :2] + prev[:, 2:] / 2.0
    cc = cur[:, :2] + cur[:, 2:] / 2.0
    diag = np.hypot(prev[:, 2], prev[:, 3])[:, None]
    dist = np.linalg.norm(pc[:, None] - cc[None], axis=2) / np.maximum(diag, 1e-9)
    # IoU decides; centre distance only breaks in where boxes barely overlap.
    score = np.where(iou >= min_iou, 1.0 + iou, np.where(dist <= max_centre_dist, 1.0 - dist, -1.0))
    pairs = []
    used_p, used_c = set(), set()
    for flat in np.argsort(-score, axis=None):
        i, j = divmod(int(flat), score.shape[1])
        if score[i, j] < 0:
            break
        if i in used_p or j in used_c:
            continue
        used_p.add(i)
        used_c.add(j)
        pairs.append((i, j))
    return pairs


@dataclass
class Tracker:
    """Keeps tracks across frames. One per video or camera; `reset()` when the scene jumps."""

    cfg: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def reset(self) -> None:
        self.tracks = []

    def update(self, accepted: Detections, rejected: Detections | None = None) -> Detections:
        """This frame's detections -> the tracked, smoothed readings to show (with track_ids).

        `rejected` (low-confidence candidates) may continue an existing track, so a digit whose
        confidence dips for a frame keeps its smoothed label instead of vanishing; it never
        starts a new track. The result keeps the order of `accepted`, then continued rejected ones.
        """
        cfg = self.cfg
        cands = accepted if rejected is None or len(rejected) == 0 else _concat(accepted, rejected)
        n_acc = len(accepted)
        prev = np.array([t.box for t in self.tracks], np.float64).reshape(-1, 4)
        pairs = match_boxes(prev, cands.boxes.astype(np.float64), cfg.min_iou, cfg.max_centre_dist)
        cur_track: dict[int, Track] = {}
        matched_tracks = set()
        for i, j in pairs:
            t = self.tracks[i]
            t.probs = (1.0 - cfg.alpha) * t.probs + cfg.alpha * cands.probs[j].astype(np.float64)
            t.box = cands.boxes[j].copy()
            t.missed = 0
            best = int(np.argmax(t.probs))
            if best != t.digit and t.probs[best] >= t.probs[t.digit] + cfg.switch_margin:
                t.digit = best
            cur_track[j] = t
            matched_tracks.add(id(t))
        for t in self.tracks:
            if id(t) not in matched_tracks:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= cfg.max_missed]
        for j in range(n_acc):
            if j not in cur_track:
                probs = cands.probs[j].astype(np.float64)
                t = Track(self.next_id, cands.boxes[j].copy(), probs, int(np.argmax(probs)))
                self.next_id += 1
                self.tracks.append(t)
                cur_track[j] = t
        keep, ids, digits, conf, probs = [], [], [], [], []
        for j in sorted(cur_track):
            t = cur_track[j]
            if t.probs[t.digit] < cfg.min_confidence and j >= n_acc:
                continue
            keep.append(j)
            ids.append(t.track_id)
            digits.append(t.digit)
            conf.append(t.probs[t.digit])
            probs.append(t.probs)
        out = cands.select(np.array(keep, np.int64))
        out.track_ids = np.array(ids, np.int64)
        out.digits = np.array(digits, np.int64)
        out.confidence = np.array(conf, np.float32)
        out.probs = np.array(probs, np.float32).reshape(-1, 10)
        return out


def _concat(a: Detections, b: Detections) -> Detections:
    def cat(x, y):
        return None if x is None or y is None else np.concatenate([x, y])

    return Detections(**{f.name: cat(getattr(a, f.name), getattr(b, f.name)) for f in fields(Detections)})


def flicker_rate(labels_per_object: list[list[int]]) -> float:
    """Fraction of frame-to-frame label changes over all consecutive frames of each object.

    labels_per_object: for each steady object, the label shown in each frame (-1 = not shown;
    appearing or vanishing counts as a change too).
    """
    changes = pairs = 0
    for seq in labels_per_object:
        s = np.asarray(seq)
        if len(s) < 2:
            continue
        changes += int(np.count_nonzero(s[1:] != s[:-1]))
        pairs += len(s) - 1
    return changes / pairs if pairs else 0.0
