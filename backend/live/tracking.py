"""Stable readings over time: match digit boxes frame to frame, confirm, smooth and hold them.

What a person sees must not flicker: a steady digit keeps its label although one frame's crop came
out a little different (each track keeps an exponential moving average of its class probabilities,
and the label it shows changes only when another class leads the average by a margin); a digit the
detector misses for a few frames (a finger over it, motion blur) keeps its place; a speck or a
split stroke seen for a frame or two never shows, because a track is shown only once it has been
seen in `min_hits` frames. A new digit still shows within a few frames, and a digit rewritten in
place within a few more. Another sheet brought before the camera is told from these by most of the
digits shown reading as others two frames running: its readings show from its second frame, and
the last sheet's digits are not held.

The tracker also says which digits need not go through the model again (`reuse`): a confident
track whose crop has barely changed since it was last classified keeps that prediction, for
`max_age` frames (when many come due at once, as a page's do, they take turns).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from backend.frame.detections import Detections, box_iou
from backend.frame.pipeline import FrameResult, Pipeline, read_in_order
from backend.frame.reading import joined_pairs
from backend.model.predictions import Predictions


@dataclass
class TrackerConfig:
    alpha: float = 0.2  # weight of the newest frame in the probability average (1.0 = no smoothing)
    switch_margin: float = 0.15  # another class must lead the shown one by this much to replace it
    min_iou: float = 0.25  # boxes overlapping at least this much are the same digit
    max_centre_dist: float = 0.6  # ...or centres closer than this fraction of the box diagonal
    min_hits: int = 4  # frames a track must be seen in before it is shown (1 = at once)
    max_missed: int = 5  # frames a shown track keeps its place without a detection (occlusion, blur);
    # a track seen in fewer than min_hits + max_missed frames is held for fewer
    min_confidence: float = 0.5  # a rejected candidate continues a track only while it is this confident
    reuse: bool = True  # skip the model for unchanged crops of confident tracks
    max_age: int = 10  # ...but classify every track again after this many frames (see reuse)
    max_crop_change: float = 0.06  # ...or when its crop differs by more (mean |diff|, 0..1)
    reuse_confidence: float = 0.8  # ...or when its smoothed confidence is below this
    new_scene: float = 0.7  # this share of the shown digits seen, read as the same other digits two
    # frames running (and not where a move of the page takes them), is another sheet: they show
    # those readings at once, and the last sheet's digits not seen go


@dataclass
class Track:
    track_id: int
    det: Detections  # the latest detection (one row), shown in place while the track is missed
    probs: np.ndarray  # (10,) smoothed probabilities
    digit: int  # the label shown (changes with hysteresis)
    hits: int = 1  # frames with a matching detection
    missed: int = 0  # consecutive frames without one
    classified: Predictions | None = None  # the model's last prediction for this track (one row)
    classified_crop: np.ndarray | None = None  # (28, 28) uint8 the crop it was made on
    age: int = 0  # frames since then
    other: int = -1  # the digit last read for it when that was not the digit shown (else -1)

    @property
    def box(self) -> np.ndarray:
        return self.det.boxes[0]

    @property
    def confidence(self) -> float:
        return float(self.probs[self.digit])


def match_scores(prev: np.ndarray, cur: np.ndarray, min_iou: float, max_centre_dist: float) -> np.ndarray:
    """(N, M) how well each previous box (N, 4) continues as each current one (M, 4): 1 + IoU where
    they overlap at least `min_iou`, else 1 - centre distance where that is at most
    `max_centre_dist` of the previous box's diagonal (small, fast-moving digits), else -1 (never)."""
    iou = box_iou(prev, cur)
    diag = np.hypot(prev[:, 2], prev[:, 3])[:, None]
    dist = _lengths(_centres(prev)[:, None] - _centres(cur)[None]) / np.maximum(diag, 1e-9)
    return np.where(iou >= min_iou, 1.0 + iou, np.where(dist <= max_centre_dist, 1.0 - dist, -1.0))


def match_boxes(prev: np.ndarray, cur: np.ndarray, min_iou: float, max_centre_dist: float) -> list[tuple[int, int]]:
    """One-to-one matching of previous boxes to current ones, best pair first -> [(prev_i, cur_j)].

    Greedy: on the benchmark clips it matches as well as the optimal (Hungarian) assignment once
    the page's shift is taken out (`page_shift`), without a dependency.
    """
    if len(prev) == 0 or len(cur) == 0:
        return []
    score = match_scores(prev, cur, min_iou, max_centre_dist).ravel()
    near = np.flatnonzero(score >= 0)  # a page's boxes can each continue only a few others
    pairs, used_p, used_c = [], set(), set()
    for flat in near[np.argsort(-score[near], kind="stable")].tolist():
        i, j = divmod(flat, len(cur))
        if i not in used_p and j not in used_c:
            used_p.add(i)
            used_c.add(j)
            pairs.append((i, j))
    return pairs


def page_shift(prev: np.ndarray, cur: np.ndarray, tol: float = 0.25, max_pairs: int = 10_000) -> np.ndarray:
    """How far the page moved between two frames' boxes (x, y, w, h) -> (dx, dy) pixels.

    Every displacement from a previous box to a current one of about its size is a candidate (the
    64 smallest); the one that brings the most previous boxes within `tol` of their height onto a
    current box wins, the smallest among equals (a hand-held camera shakes all digits alike, often
    by more than a digit's width). Two boxes at least must agree (one box moving far is as likely
    another digit). Beyond `max_pairs` box pairs (a page), _page_shift_many.
    """
    if len(prev) == 0 or len(cur) == 0:
        return np.zeros(2)
    if len(prev) * len(cur) > max_pairs:
        return _page_shift_many(prev, cur, tol)
    shifts = _moves(prev, cur)[:64]
    support = _support(prev, cur, shifts, tol)
    if len(support) == 0 or support.max() < 2:
        return np.zeros(2)
    return shifts[int(np.argmax(support))]  # the first best: the smallest move


def _page_shift_many(prev: np.ndarray, cur: np.ndarray, tol: float, sample: int = 48, seeds: int = 8,
                     reach: float = 3.0) -> np.ndarray:
    """page_shift for a page of many digits, whose boxes are each near many others. The support is
    counted on `sample` boxes spread over the page; a page that has not moved (most of them on a
    current box as they are) is told first. Otherwise the candidates are every displacement of
    `seeds` of them onto a current box of about their size at most `reach` digit heights away, and
    the winner must bring 60 % of the sample onto current boxes: on a page that dense, a move by
    a digit or a line too few or too many brings a third to a half of them onto their neighbours
    (on the benchmark's pages; the true move, 94 %)."""
    spread = prev[np.unique(np.linspace(0, len(prev) - 1, min(sample, len(prev))).astype(np.int64))]
    if _support(spread, cur, np.zeros((1, 2)), tol)[0] >= 0.8 * len(spread):
        return np.zeros(2)
    seed = spread[np.unique(np.linspace(0, len(spread) - 1, min(seeds, len(spread))).astype(np.int64))]
    shifts = np.concatenate([np.zeros((1, 2)), _moves(seed, cur, reach * float(np.median(prev[:, 3])))])
    n = _support(spread, cur, shifts, tol)
    best = int(np.argmax(n))  # the first best: the smallest move
    return shifts[best] if n[best] >= max(2, 0.6 * len(spread)) else np.zeros(2)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return boxes[:, :2] + boxes[:, 2:] / 2


def _lengths(d: np.ndarray) -> np.ndarray:
    """Lengths of (..., 2) offsets: np.linalg.norm(d, axis=-1)'s arithmetic, at a quarter of its cost."""
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])


def _moves(prev: np.ndarray, cur: np.ndarray, reach: float = np.inf) -> np.ndarray:
    """(K, 2) the displacements from the previous boxes onto current boxes of about their height,
    at most `reach` long, smallest first (equal ones in the order of the boxes)."""
    ratio = cur[None, :, 3] / np.maximum(prev[:, None, 3], 1e-9)
    i, j = np.nonzero((ratio > 0.7) & (ratio < 1.4))
    shifts = _centres(cur)[j] - _centres(prev)[i]
    size = np.hypot(*shifts.T)
    order = np.argsort(size, kind="stable")
    return shifts[order[size[order] <= reach]]


def _support(prev: np.ndarray, cur: np.ndarray, shifts: np.ndarray, tol: float) -> np.ndarray:
    """(K,) how many previous boxes each shift brings within `tol` of their height of a current
    box's centre. Tested only on the pairs a shift can bring together (at most the longest shift
    and the tolerance apart: on a page of hundreds of boxes, a few per box), not every pair."""
    pc, cc = _centres(prev), _centres(cur)
    d = cc[None] - pc[:, None]  # (N, M, 2)
    reach = np.hypot(*shifts.T).max(initial=0.0) + tol * prev[:, 3].max() + 1.0
    i, j = np.nonzero(np.hypot(d[..., 0], d[..., 1]) <= reach)
    near = _lengths(pc[i][None] + shifts[:, None] - cc[j][None]) <= tol * prev[i, 3][None]  # (K, P)
    onto = np.zeros((len(shifts), len(prev)), bool)  # the previous boxes each shift brings onto a current one
    k, p = np.nonzero(near)
    onto[k, i[p]] = True
    return onto.sum(axis=1)


def _read_moved(tracks: list[Track], boxes: np.ndarray, read: np.ndarray, tol: float = 0.25) -> bool:
    """Whether the tracks' digits are where a move of the page takes them: a move (of a few tracks
    onto boxes at most three digit heights away, as `_page_shift_many` tries them) that brings a
    fifth of the tracks or more (2 at least) within `tol` of their height of boxes (N, 4) read
    (`read` (N,)) as the digits they show, and no more onto boxes read otherwise."""
    prev, cur = np.array([t.box for t in tracks], np.float64), np.asarray(boxes, np.float64)
    digits = np.array([t.digit for t in tracks])
    seed = prev[np.unique(np.linspace(0, len(prev) - 1, min(8, len(prev))).astype(np.int64))]
    shifts = _moves(seed, cur, 3.0 * float(np.median(prev[:, 3])))
    if len(shifts) == 0:
        return False
    same = np.zeros(len(shifts))
    for d in np.intersect1d(digits, read):
        same += _support(prev[digits == d], cur[read == d], shifts, tol)
    k = int(np.argmax(same))
    return same[k] >= max(2.0, 0.2 * len(tracks)) and 2 * same[k] >= _support(prev, cur, shifts[k:k + 1], tol)[0]


def concat(parts: list[Detections]) -> Detections:
    """Detections stacked in order (fields missing in any part are dropped)."""
    def cat(name):
        values = [getattr(d, name) for d in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return Detections(**{f.name: cat(f.name) for f in fields(Detections)})


@dataclass
class Tracker:
    """Keeps tracks across frames. One per video or camera; `reset()` when the scene jumps."""

    cfg: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    # reuse()'s match of this frame's candidates, for update() to take over: (boxes, pairs, shift)
    _matched: tuple | None = field(default=None, repr=False)
    # The digits shown next to each other in a line, by track id, and whether they were one number
    neighbours: dict[tuple[int, int], bool] = field(default_factory=dict)

    def reset(self) -> None:
        self.tracks = []
        self._matched = None
        self.neighbours = {}

    def _match(self, boxes: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Tracks to this frame's boxes -> (pairs (track i, box j), the page's shift (dx, dy))."""
        prev = np.array([t.box for t in self.tracks], np.float64).reshape(-1, 4)
        cur = np.asarray(boxes, np.float64).reshape(-1, 4)
        shift = page_shift(prev, cur)
        moved = prev + np.array([shift[0], shift[1], 0.0, 0.0])
        return match_boxes(moved, cur, self.cfg.min_iou, self.cfg.max_centre_dist), shift

    def reuse(self, boxes: np.ndarray, crops: np.ndarray) -> tuple[np.ndarray, Predictions]:
        """A frame's candidate boxes (N, 4) and model inputs (N, 28, 28) uint8 -> (known (N,) bool,
        Predictions of the known ones, in order): the crops of confident tracks that changed by at
        most `max_crop_change` since the track was last classified, less than `max_age` frames ago
        (or due, but waiting its turn).
        Pass as `Pipeline.process(frame, reuse=tracker.reuse, read=False)`; update() takes over
        its match of the boxes."""
        cfg = self.cfg
        known = np.zeros(len(boxes), bool)
        rows: list[Predictions] = []
        if cfg.reuse:
            pairs, shift = self._match(boxes)
            self._matched = (np.asarray(boxes), pairs, shift)
            # Tracks due for a fresh read take turns, the oldest first, at most twice their share
            # a frame (8 at least): a page whose digits came into view together is then not read
            # whole again in one frame every max_age frames.
            due = sorted((i for i, _ in pairs if self.tracks[i].age + 1 >= cfg.max_age),
                         key=lambda i: -self.tracks[i].age)
            waiting = set(due[max(8, -(-2 * len(self.tracks) // cfg.max_age)):])
            ready = [(i, j) for i, j in sorted(pairs, key=lambda p: p[1])
                     if not ((t := self.tracks[i]).classified is None or t.confidence < cfg.reuse_confidence
                             or (t.age + 1 >= cfg.max_age and i not in waiting))]
            if ready:  # their crops against those they were read on, all at once
                ii, jj = (list(v) for v in zip(*ready))
                last = np.stack([self.tracks[i].classified_crop for i in ii])
                same = np.abs(crops[jj].astype(np.int16) - last).mean(axis=(1, 2)) / 255.0 <= cfg.max_crop_change
                known[np.asarray(jj)[same]] = True
                rows = [self.tracks[i].classified for i, s in zip(ii, same.tolist()) if s]
        if not rows:
            return known, Predictions.empty(1)
        return known, Predictions.concat(rows)

    def update(self, accepted: Detections, rejected: Detections | None = None) -> Detections:
        """This frame's detections -> the tracked, smoothed digits to show (with track_ids), not in
        reading order: confirmed tracks, those missed for a few frames at their last place.

        `rejected` (low-confidence candidates) may continue an existing track, so a digit whose
        confidence dips for a frame keeps its smoothed label instead of vanishing; it never
        starts a new track.
        """
        cfg = self.cfg
        cands = accepted if rejected is None or len(rejected) == 0 else concat([accepted, rejected])
        matched: dict[int, int] = {}  # track index -> candidate index
        pairs, shift = self._match_again(cands.boxes)
        for i, j in pairs:
            if j < len(accepted) or self.tracks[i].confidence >= cfg.min_confidence:
                matched[i] = j
        taken = set(matched.values())
        for i, t in enumerate(self.tracks):
            if i not in matched:  # held in place: on the page, which moved
                t.missed, t.other = t.missed + 1, -1
                t.det.boxes = (t.det.boxes + np.round([shift[0], shift[1], 0, 0])).astype(t.det.boxes.dtype)
        scene = self._new_scene(matched, cands.boxes, cands.probs.argmax(1), len(accepted))
        if scene:  # another sheet: what is seen is read afresh, not after the smoothing's frames
            for i, j in matched.items():
                t = self.tracks[i]
                t.probs, t.digit = cands.probs[j].astype(np.float64), int(cands.probs[j].argmax())
            self.neighbours = {}
        self._observe([self.tracks[i] for i in matched], cands, list(matched.values()))
        # A track is held through as many misses as it was seen beyond confirmation (at most
        # max_missed): a steady digit keeps its place under a finger, while specks and split
        # strokes, and what a finger itself looks like for a few frames, go at once; on another
        # sheet, the last sheet's digits not seen in the two frames that told it go at once.
        self.tracks = [t for t in self.tracks
                       if t.missed <= (1 if scene else min(cfg.max_missed, max(t.hits - cfg.min_hits, 0)))]
        for j in range(len(accepted)):
            if j not in taken:
                det = accepted.select(slice(j, j + 1))
                probs = det.probs[0].astype(np.float64)
                t = Track(self.next_id, det, probs, int(np.argmax(probs)))
                t.classified, t.classified_crop = self._prediction(det), det.crops[0]
                self.next_id += 1
                self.tracks.append(t)
        shown = [t for t in self.tracks if t.hits >= cfg.min_hits]
        if not shown:
            out = accepted.select(np.zeros(0, np.int64))
            out.track_ids = np.zeros(0, np.int64)
            return out
        out = concat([t.det for t in shown])
        out.track_ids = np.array([t.track_id for t in shown], np.int64)
        out.digits = np.array([t.digit for t in shown], np.int64)
        out.confidence = np.array([t.confidence for t in shown], np.float32)
        out.probs = np.array([t.probs for t in shown], np.float32).reshape(-1, 10)
        return out

    def _new_scene(self, matched: dict[int, int], boxes: np.ndarray, read: np.ndarray, accepted: int) -> bool:
        """Whether `new_scene` of the shown tracks seen (2 at least) were read as the same other
        digit in this frame and the last, as accepted candidates, and their digits are not where
        another move of the page takes them (`_read_moved`): another sheet in front of the camera,
        not a rewritten digit or a bad frame, which contradict fewer or only for a frame, nor a
        page shaken by more than its digits' spacing and matched a digit off (none of these on the
        live clips, shaken up to 6 times as much). Notes each track's other reading for the next
        frame."""
        shown, again = [], 0
        for i, j in matched.items():
            t = self.tracks[i]
            other = int(read[j]) if j < accepted and read[j] != t.digit else -1
            if t.hits >= self.cfg.min_hits:
                shown.append(t)
                again += other >= 0 and other == t.other
            t.other = other
        return again >= max(2, self.cfg.new_scene * len(shown)) and not _read_moved(shown, boxes, read)

    def _match_again(self, boxes: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
        """_match for update: the boxes reuse() matched in this frame, in another order (the
        accepted first), take over its match (the tracks are the same until update changes them).
        Boxes it did not see (a touching pair read in halves instead of whole) are matched to the
        tracks left, after the same shift of the page."""
        matched, self._matched = self._matched, None
        if matched is None:
            return self._match(boxes)
        where = {b: j for j, b in enumerate(map(tuple, np.asarray(boxes).tolist()))}
        if len(where) < len(boxes):  # the same box twice: which is which is not known
            return self._match(boxes)
        seen, pairs, shift = matched
        before = [where.get(b) for b in map(tuple, seen.tolist())]
        kept = [(i, before[j]) for i, j in pairs if before[j] is not None]
        rest_t = sorted(set(range(len(self.tracks))) - {i for i, _ in kept})
        rest_b = sorted(set(range(len(boxes))) - {j for _, j in kept})
        if not rest_t or not rest_b:
            return kept, shift
        prev = np.array([self.tracks[i].box for i in rest_t], np.float64) + [shift[0], shift[1], 0.0, 0.0]
        more = match_boxes(prev, np.asarray(boxes, np.float64)[rest_b], self.cfg.min_iou, self.cfg.max_centre_dist)
        return kept + [(rest_t[a], rest_b[b]) for a, b in more], shift

    def _observe(self, tracks: list[Track], cands: Detections, rows: list[int]) -> None:
        """Each track seen again as its row of `cands`: its probabilities averaged in, its label
        switched where another class leads by the margin. All at once: a page has hundreds."""
        if not tracks:
            return
        cfg = self.cfg
        new = cands.probs[rows]
        probs = (1.0 - cfg.alpha) * np.array([t.probs for t in tracks]) + cfg.alpha * new.astype(np.float64)
        shown, best, k = np.array([t.digit for t in tracks]), probs.argmax(1), np.arange(len(tracks))
        switch = (best != shown) & (probs[k, best] >= probs[k, shown] + cfg.switch_margin)
        # The model's prediction was reused where it is the one the track was last classified by.
        last = np.array([np.full(10, np.nan, np.float32) if t.classified is None else t.classified.probs[0]
                         for t in tracks])
        reused = (last == new).all(1).tolist()
        for t, j, p, digit, same in zip(tracks, rows, probs, np.where(switch, best, shown).tolist(), reused):
            t.probs, t.digit, t.hits, t.missed = p, digit, t.hits + 1, 0
            t.det = cands.select(slice(j, j + 1))
            if same:
                t.age += 1
            else:
                t.classified, t.classified_crop, t.age = self._prediction(t.det), t.det.crops[0], 0

    @staticmethod
    def _prediction(det: Detections) -> Predictions:
        return Predictions(det.digits[:1], det.confidence[:1], det.probs[:1], det.attn[:1], det.attn_last[:1])


def read_tracked(pipeline: Pipeline, tracker: Tracker, frame: np.ndarray) -> FrameResult:
    """A video's frame through the pipeline, tracked: the crops the tracker knows are not read
    again, and the digits are the tracker's, in reading order, with their numbers."""
    result = pipeline.process(frame, reuse=tracker.reuse, read=False)  # read once, tracked
    dets, reading = read_in_order(tracker.update(result.detections, result.rejected), tracker.neighbours)
    tracker.neighbours = joined_pairs(reading, dets.track_ids)
    return replace(result, detections=dets, numbers=reading.numbers, reading=reading)
