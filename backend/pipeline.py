"""One frame through every stage: detect -> preprocess -> recognize, each timed."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .detect import DetectConfig, detect
from .preprocess import crops_to_mnist, to_batch
from .recognizer import Recognizer


@dataclass
class Detections:
    """The digits of one frame, as numpy arrays with first axis N (supervision style)."""

    boxes: np.ndarray  # (N, 4) int32 x, y, w, h in pixels of the original frame
    digits: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32
    probs: np.ndarray  # (N, 10) float32
    attn: np.ndarray  # (N, g, g) float32 CLS attention rollout in [0, 1]
    attn_last: np.ndarray  # (N, g, g) float32 last-layer CLS attention in [0, 1]
    crops: np.ndarray  # (N, 28, 28) uint8 the model's input, white on black
    track_ids: np.ndarray | None = None  # (N,) int64 once tracked

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: np.ndarray) -> "Detections":
        """The subset picked by a boolean mask or an index array."""
        return Detections(*(None if v is None else v[keep] for v in
                            (self.boxes, self.digits, self.confidence, self.probs, self.attn, self.attn_last,
                             self.crops, self.track_ids)))


@dataclass
class FrameResult:
    detections: Detections  # accepted digits
    rejected: Detections  # candidates below the confidence threshold
    numbers: list[str]  # numbers read, in reading order
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage: detect, preprocess, model
    mask: np.ndarray | None = None  # the detector's threshold mask (debug view), at work size


@dataclass
class PipelineConfig:
    detect: DetectConfig = field(default_factory=DetectConfig)
    min_confidence: float = 0.5  # below this a candidate is reported as rejected


class Pipeline:
    def __init__(self, recognizer: Recognizer, cfg: PipelineConfig | None = None):
        self.recognizer = recognizer
        self.cfg = cfg or PipelineConfig()

    def process(self, frame: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        boxes, mask = detect(frame, self.cfg.detect)
        t1 = time.perf_counter()
        crops = crops_to_mnist(frame, boxes)
        batch = to_batch(crops)
        t2 = time.perf_counter()
        p = self.recognizer.predict(batch)
        t3 = time.perf_counter()
        dets = Detections(boxes, p.digits, p.confidence, p.probs, p.attn_rollout, p.attn_last, crops)
        ok = dets.confidence >= self.cfg.min_confidence
        accepted = dets.select(ok)
        order = np.lexsort((accepted.boxes[:, 0], accepted.boxes[:, 1])) if len(accepted) else np.zeros(0, int)
        accepted = accepted.select(order)
        numbers = ["".join(str(d) for d in accepted.digits)] if len(accepted) else []
        timings = {"detect": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "model": (t3 - t2) * 1e3}
        return FrameResult(accepted, dets.select(~ok), numbers, timings, mask)
