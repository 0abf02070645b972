"""One frame through every stage: detect -> preprocess -> recognize -> read, each timed."""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable

import numpy as np

from backend.frame.detections import Detections
from backend.frame.detect import DetectConfig, Polarity, find_candidates, maybe_two
from backend.frame.preprocess import PreprocessConfig, candidates_to_mnist, to_batch
from backend.frame.reading import Reading, reading_order
from backend.model.predictions import Predictions

if TYPE_CHECKING:  # the recognizer (and torch) are imported by whoever builds one
    from backend.model.recognizer import Recognizer

# A page's crops go to the model in chunks of this many, each while the next is prepared: the
# model runs on the other core (ONNX Runtime and torch let go of Python's lock while they
# compute). 200 digits at 1280x720 on 2 cores: 44 -> 34-38 ms a frame. Each chunk handed over
# costs the preparing thread a wake-up of the other and turns at Python's lock (13 chunks of 16:
# 2.3 ms a page, with a model that does nothing), so chunks are not smaller; once the last is
# ready, the chunks the model thread has not started are read on this thread, beside it.
# Preparing and reading ten 200-digit pages, ms a page: chunks of 16 20.6-21.0, of 24 with that
# help 19.0-19.5 (of 32 19.2-19.6, of 16 with it 20.2-20.7).
CHUNK = 24

# Given a frame's candidate boxes (N, 4) and model inputs (N, 28, 28), which of them need not go
# through the model again: (known (N,) bool, Predictions for the known ones, in their order).
Reuse = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Predictions]]


@dataclass
class FrameResult:
    detections: Detections  # accepted digits, in reading order
    rejected: Detections  # candidates the model was not confident were digits
    numbers: list[str]  # numbers read, in reading order
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage: detect, preprocess, model, total
    mask: np.ndarray | None = None  # the detector's threshold mask (debug view), at work size
    reading: Reading | None = None  # lines and numbers of the accepted digits (indices into detections)
    light_on_dark: bool = False  # the frame was read as light writing on a dark board
    model_calls: int = 0  # crops that went through the model (the others were reused)
    dropped: int = 0  # candidates beyond DetectConfig.max_digits, left unread (hostile input only)


@dataclass
class PipelineConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    min_confidence: float = 0.5  # below this (a calibrated probability: more likely wrong than right) rejected
    # A candidate that may be two touching digits is read as two where each part reads as a digit
    # at pair_confidence or more and the whole at less than whole_confidence: a single wide digit
    # parted at its waist reads as two digits as surely ("0" as "67"), but is read whole surer.
    pair_confidence: float = 0.97
    whole_confidence: float = 0.995


class Pipeline:
    """Frame in, digits out: `Pipeline(Recognizer(), PipelineConfig()).process(frame)`."""

    def __init__(self, recognizer: Recognizer, cfg: PipelineConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or PipelineConfig()
        self.polarity: Polarity | None = None  # the last frame's ink polarity and closer look, kept while the scene holds
        self._model_thread: ThreadPoolExecutor | None = None

    def process(self, frame: np.ndarray, reuse: Reuse | None = None, read: bool = True) -> FrameResult:
        """frame: (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) grey uint8, any size.

        reuse: says which candidates already have predictions (a tracker's digits whose crop did
        not change); only the others go through the model.
        read: put the accepted digits in reading order and read their numbers (False: a tracker
        reads the digits it shows instead; the numbers are empty and `reading` None).
        """
        t0 = time.perf_counter()
        cand = find_candidates(frame, self.cfg.detect, self.polarity)
        self.polarity = cand.polarity
        t1 = time.perf_counter()
        if reuse is None and len(cand.boxes) >= 2 * CHUNK:  # a page: preprocessing and model overlap
            crops, batches, pending = self._overlapped(cand)
            n_model = len(crops)
            t2 = time.perf_counter()
            p = self._finish(batches, pending)
        else:
            crops = candidates_to_mnist(cand, self.cfg.preprocess)
            known, cached = reuse(cand.boxes, crops) if reuse is not None and len(crops) else (None, None)
            batch = to_batch(crops if known is None else crops[~known])
            n_model = len(batch)
            t2 = time.perf_counter()
            p = self._predict(batch)
            if known is not None and known.any():
                p = _merge(p, cached, known)
        boxes, crops, p, n_parts = self._read_pairs(cand, crops, p)
        n_model += n_parts
        t3 = time.perf_counter()
        dets = Detections(boxes, p.digits, p.confidence, p.probs, p.attn_rollout, p.attn_last, crops)
        ok = dets.confidence >= self.cfg.min_confidence
        accepted, reading = read_in_order(dets.select(ok)) if read else (dets.select(ok), None)
        # With overlap, "model" is the time the model added after the last crop was ready.
        timings = {"detect": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "model": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return FrameResult(accepted, dets.select(~ok), reading.numbers if read else [], timings, cand.mask, reading,
                           cand.light_on_dark, n_model, cand.dropped)

    def _predict(self, batch: np.ndarray) -> Predictions:
        """Predictions of a batch; more than a chunk (a tracked page's crops that changed or are
        due a fresh read, all of a new page's) is read half here and half on the model thread, at
        once (41 crops: 5.1 -> 3.2 ms; 24: 2.9 against 2.8 ms, the hand-over eats the gain)."""
        if len(batch) <= CHUNK:
            return self.recognizer.predict(batch)
        half = len(batch) // 2
        other = self._model().submit(self.recognizer.predict, batch[half:])
        return Predictions.concat([self.recognizer.predict(batch[:half]), other.result()])

    def _model(self) -> ThreadPoolExecutor:
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")
        return self._model_thread

    def _overlapped(self, cand) -> tuple[np.ndarray, list[np.ndarray], list[Future]]:
        """All crops, each chunk handed to the model thread as soon as it is ready: the crops, the
        chunks' model inputs and their pending predictions."""
        chunks, batches, pending = [], [], []
        for start in range(0, len(cand.boxes), CHUNK):
            chunks.append(candidates_to_mnist(cand, self.cfg.preprocess, start, start + CHUNK))
            batches.append(to_batch(chunks[-1]))
            pending.append(self._model().submit(self.recognizer.predict, batches[-1]))
        return np.concatenate(chunks), batches, pending

    def _read_pairs(self, cand, crops: np.ndarray, p: Predictions) -> tuple[np.ndarray, np.ndarray, Predictions, int]:
        """The candidates read whole at less than whole_confidence that may be two touching digits
        (detect.maybe_two) read in parts too: where every part reads as a digit at pair_confidence
        or more, the parts take the whole's place. Boxes, crops and predictions of the frame's
        digits so read, and the parts read."""
        splits = maybe_two(cand, np.flatnonzero(p.confidence < self.cfg.whole_confidence), self.cfg.detect)
        if not splits:
            return cand.boxes, crops, p, 0
        parts = cand.parts(splits)
        part_crops = candidates_to_mnist(parts, self.cfg.preprocess)
        pp = self.recognizer.predict(to_batch(part_crops))
        keep, taken = np.ones(len(cand.boxes), bool), np.zeros(len(parts.boxes), bool)
        start = 0
        for i, b, _ in splits:
            sel = slice(start, start + len(b))
            start += len(b)
            if pp.confidence[sel].min() >= self.cfg.pair_confidence:
                keep[i], taken[sel] = False, True
        if keep.all():
            return cand.boxes, crops, p, len(part_crops)
        return (np.concatenate([cand.boxes[keep], parts.boxes[taken]]), np.concatenate([crops[keep], part_crops[taken]]),
                Predictions.concat([p.select(keep), pp.select(taken)]), len(part_crops))

    def _finish(self, batches: list[np.ndarray], pending: list[Future]) -> Predictions:
        """The predictions of every chunk: those the model thread has not started are read here."""
        here = {}
        for i in reversed(range(len(pending))):
            if not pending[i].cancel():  # started: so are all before it
                break
            here[i] = self.recognizer.predict(batches[i])
        return Predictions.concat([here[i] if i in here else f.result() for i, f in enumerate(pending)])


def _merge(new: Predictions, cached: Predictions, known: np.ndarray) -> Predictions:
    """Predictions of the unknown crops and the cached ones of the known, back in candidate order."""
    def put(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.empty((len(known), *b.shape[1:]), b.dtype)
        out[~known], out[known] = a, b
        return out

    return Predictions(*(put(getattr(new, f.name), getattr(cached, f.name)) for f in fields(Predictions)))


def read_in_order(dets: Detections, last: dict[tuple[int, int], bool] | None = None) -> tuple[Detections, Reading]:
    """Detections -> the same in reading order, and their Reading (indices into the reordered ones).
    last: tracked detections' neighbours the frame before (reading.joined_pairs)."""
    reading = reading_order(dets.boxes, dets.digits, ids=dets.track_ids, last=last)
    dets = dets.select(reading.order)
    return dets, Reading(np.arange(len(dets)), reading.line[reading.order], reading.number[reading.order],
                         reading.numbers, reading.lines)


def frame_record(frame_index: int, source: str, result: FrameResult, time_ms: float) -> dict:
    """The JSONL object of one frame, plain Python types, rounded:
    {"frame", "source", "time_ms", "detections": [{"box", "digit", "confidence", "probs"}], "numbers"},
    and "dropped" when the digit limit left candidates unread."""
    d = result.detections
    record = {
        "frame": int(frame_index),
        "source": str(source),
        "time_ms": round(float(time_ms), 2),
        "detections": [
            {"box": [int(v) for v in d.boxes[i]], "digit": int(d.digits[i]),
             "confidence": round(float(d.confidence[i]), 4),
             "probs": [round(float(v), 4) for v in d.probs[i]]}
            for i in range(len(d))
        ],
        "numbers": [str(s) for s in result.numbers],
    }
    if result.dropped:
        record["dropped"] = int(result.dropped)
    return record
