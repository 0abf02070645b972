"""One frame through every stage: detect -> preprocess -> recognize -> read, each timed."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from backend.frame.detections import Detections
from backend.frame.detect import DetectConfig, Polarity, find_candidates
from backend.frame.preprocess import PreprocessConfig, candidates_to_mnist, to_batch
from backend.frame.reading import Reading, reading_order
from backend.model.recognizer import Recognizer


@dataclass
class FrameResult:
    detections: Detections  # accepted digits, in reading order
    rejected: Detections  # candidates the model was not confident were digits
    numbers: list[str]  # numbers read, in reading order
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage: detect, preprocess, model, total
    mask: np.ndarray | None = None  # the detector's threshold mask (debug view), at work size
    reading: Reading | None = None  # lines and numbers of the accepted digits (indices into detections)
    light_on_dark: bool = False  # the frame was read as light writing on a dark board


@dataclass
class PipelineConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    min_confidence: float = 0.5  # below this a candidate is reported as rejected


class Pipeline:
    """Frame in, digits out: `Pipeline(Recognizer(), PipelineConfig()).process(frame)`."""

    def __init__(self, recognizer: Recognizer, cfg: PipelineConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or PipelineConfig()
        self.polarity: Polarity | None = None  # the last frame's ink polarity, reused while the scene holds

    def process(self, frame: np.ndarray) -> FrameResult:
        """frame: (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) grey uint8, any size."""
        t0 = time.perf_counter()
        cand = find_candidates(frame, self.cfg.detect, self.polarity)
        self.polarity = cand.polarity
        t1 = time.perf_counter()
        crops = candidates_to_mnist(cand, self.cfg.preprocess)
        batch = to_batch(crops)
        t2 = time.perf_counter()
        p = self.recognizer.predict(batch)
        t3 = time.perf_counter()
        dets = Detections(cand.boxes, p.digits, p.confidence, p.probs, p.attn_rollout, p.attn_last, crops)
        ok = dets.confidence >= self.cfg.min_confidence
        accepted = dets.select(ok)
        reading = reading_order(accepted.boxes, accepted.digits)
        accepted = accepted.select(reading.order)
        # Indices of the reading now refer to the reordered detections.
        reading = Reading(np.arange(len(accepted)), reading.line[reading.order], reading.number[reading.order],
                          reading.numbers, reading.lines)
        timings = {"detect": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "model": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return FrameResult(accepted, dets.select(~ok), reading.numbers, timings, cand.mask, reading,
                           cand.light_on_dark)


def frame_record(frame_index: int, source: str, result: FrameResult, time_ms: float) -> dict:
    """The JSONL object of one frame, plain Python types, rounded:
    {"frame", "source", "time_ms", "detections": [{"box", "digit", "confidence", "probs"}], "numbers"}."""
    d = result.detections
    return {
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
