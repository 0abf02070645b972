"""The live loop on hard clips of real handwriting: accuracy, flicker, latency and model calls per frame.

  python -m backend.bench.bench_live                 # 12 clips x 60 frames (backend.bench.live_clips)
  python -m backend.bench.bench_live --steady        # a camera on a stand: model calls per detection
  python -m backend.bench.bench_live --compare       # also raw readings, Hungarian matching, no reuse
  python -m backend.bench.bench_live --shake 4       # a much shakier hand
  python -m backend.bench.bench_live --cuts          # each clip cut to the next: another sheet

Each clip goes through the app's own frame stream (detection, recognition, tracking, reading
order) with the current model, and every frame's reading is compared with the truth as
`../shared/tools/score.py` reads a frame (digits of its boxes in rows, edit distance):
  accuracy   per-frame digit accuracy, 1 - distance / digits (at least 0), weighted by digits
  exact      frames read exactly
  flicker    changes of the whole reading from one frame to the next beyond those of the page itself
             (a digit rewritten changes it once), per pair of consecutive frames
The first WARMUP frames of a clip, when every digit is new, count only for the latency.
  latency    frames from a digit being written (new, or rewritten in place) until it shows with its
             new value at its place
  calls      digits that went through the model per frame, against candidates found per frame
  after a cut  (--cuts) accuracy over the AFTER_CUT frames from a cut, and the digits shown there
             where the new sheet has none (the last sheet's, held)
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import backend.live.tracking as tracking
from backend.process import set_torch_threads, tune_process
from backend.frame.detections import box_iou
from backend.frame.pipeline import Pipeline
from backend.live.app import frame_stream
from backend.live.tracking import Tracker, TrackerConfig
from backend.model.device import BACKENDS
from backend.model.recognizer import Recognizer, RecognizerConfig
from backend.bench.live_clips import FRAMES, Clip, clips, cut

SHARED = Path(__file__).resolve().parents[3] / "shared"
WARMUP = 5  # frames at the start of a clip not scored: every digit is new then, and may take this long
AFTER_CUT = 12  # frames from a cut to another sheet scored apart


class ClipSource:
    """A clip's frames as a video source."""

    live = False
    fps = 15.0

    def __init__(self, clip: Clip):
        self.name = self.current_name = clip.name
        self._frames = iter(clip.frames)

    def read(self):
        frame = next(self._frames, None)
        return frame is not None, frame

    def release(self) -> None:
        pass


class Counting:
    """A pipeline that counts candidates and model calls."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline, self.cfg, self.candidates, self.calls = pipeline, pipeline.cfg, 0, 0

    def process(self, frame, **kw):
        r = self.pipeline.process(frame, **kw)
        self.candidates += len(r.detections) + len(r.rejected)
        self.calls += r.model_calls
        return r


def hungarian_match(prev, cur, min_iou, max_centre_dist):
    """The optimal assignment of the tracker's match scores (for --compare; needs scipy)."""
    from scipy.optimize import linear_sum_assignment

    if len(prev) == 0 or len(cur) == 0:
        return []
    score = tracking.match_scores(prev, cur, min_iou, max_centre_dist)
    rows, cols = linear_sum_assignment(np.where(score < 0, 1e3, -score))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if score[i, j] >= 0]


@dataclass
class Figures:
    digits: float = 0.0
    correct: float = 0.0
    frames: int = 0
    exact: int = 0
    pairs: int = 0
    flickers: int = 0
    latency: dict[str, list[float]] = field(default_factory=lambda: {"new": [], "rewrite": []})
    candidates: int = 0
    calls: int = 0
    seconds: float = 0.0
    readings: list[str] = field(default_factory=list)
    cut_digits: float = 0.0  # the same, over the AFTER_CUT frames from a cut
    cut_correct: float = 0.0
    cut_stale: int = 0  # digits shown there where the new sheet has none

    def line(self, name: str) -> str:
        lat = "  ".join(f"{k} {_frames(v)}" for k, v in self.latency.items() if v)
        return (f"{name:28s} accuracy {100 * self.correct / max(self.digits, 1):6.2f} %  "
                f"exact {100 * self.exact / max(self.frames, 1):5.1f} %  "
                f"flicker {100 * self.flickers / max(self.pairs, 1):5.2f} % ({self.flickers}/{self.pairs})  "
                f"calls {self.calls / max(self.frames, 1):5.2f} / {self.candidates / max(self.frames, 1):5.2f} "
                f"candidates per frame ({100 * self.calls / max(self.candidates, 1):3.0f} %)  "
                f"{self.frames / max(self.seconds, 1e-9):5.1f} FPS" + (f"\n{'':28s} latency (frames) {lat}" if lat else "")
                + (f"\n{'':28s} {AFTER_CUT} frames from a cut: accuracy {100 * self.cut_correct / self.cut_digits:6.2f} %  "
                   f"digits shown where the new sheet has none {self.cut_stale}" if self.cut_digits else ""))


def _frames(v: list[float]) -> str:
    shown = ["never" if x == np.inf else str(int(x)) for x in v]
    return f"max {shown[int(np.argmax(v))]} of [{', '.join(shown)}]"


def load_score(path: Path):
    spec = importlib.util.spec_from_file_location("score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(clip_list: list[Clip], pipeline: Pipeline, score, cfg: TrackerConfig | None, per_clip: bool = False) -> Figures:
    """Every clip through the frame stream (cfg None: no tracking), scored."""
    fig = Figures()
    for clip in clip_list:
        counting = Counting(pipeline)
        t0 = time.perf_counter()
        shown = _stream(clip, counting, cfg)
        fig.seconds += time.perf_counter() - t0
        fig.candidates += counting.candidates
        fig.calls += counting.calls
        prev = prev_truth = None
        pairs = changes = 0
        c0 = fig.correct, fig.digits, fig.flickers
        for t, s in enumerate(shown):
            d = s.result.detections
            read = score.reading_order([{"box": b.tolist(), "digit": int(g)} for b, g in zip(d.boxes, d.digits)])
            truth = score.reading_order([{"box": b.tolist(), "digit": int(g)} for b, g in zip(clip.boxes[t], clip.labels[t])])
            e, r = truth.replace("/", ""), read.replace("/", "")
            fig.readings.append(read)
            if t >= WARMUP:
                dist = score.distance(r, e)
                fig.digits += len(e)
                fig.correct += max(0.0, 1 - dist / max(len(e), 1)) * len(e)
                fig.frames += 1
                fig.exact += dist == 0
                if clip.cut is not None and 0 <= t - clip.cut < AFTER_CUT:
                    fig.cut_digits += len(e)
                    fig.cut_correct += max(0.0, 1 - dist / max(len(e), 1)) * len(e)
                    fig.cut_stale += _stale(d.boxes, clip.boxes[t])
            if t > WARMUP:
                pairs += 1
                changes += (read != prev) - (truth != prev_truth)
            prev, prev_truth = read, truth
        fig.pairs += pairs
        fig.flickers += max(changes, 0)
        for ev in clip.events:
            fig.latency[ev.kind].append(_latency(ev, shown))
        if per_clip:
            print(f"  {clip.name:16s} accuracy {100 * (fig.correct - c0[0]) / max(fig.digits - c0[1], 1):6.2f} %  "
                  f"flickers {fig.flickers - c0[2]}  last reading {prev!r} truth {prev_truth!r}")
    return fig


def _stream(clip: Clip, pipeline, cfg: TrackerConfig | None) -> list:
    stream = frame_stream(ClipSource(clip), pipeline, Tracker(cfg) if cfg else None, warn=print)
    out = []
    for s in stream:
        if s is None:
            return out
        out.append(s)
    return out


def _stale(shown: np.ndarray, truth: np.ndarray) -> int:
    """Boxes shown that overlap no digit of the frame."""
    if len(shown) == 0 or len(truth) == 0:
        return len(shown)
    return int((box_iou(shown.astype(np.float64), truth.astype(np.float64)).max(1) < 0.3).sum())


def _latency(ev, shown) -> float:
    for t in range(ev.frame, len(shown)):
        d = shown[t].result.detections
        if len(d) and np.any((box_iou(ev.boxes[t][None], d.boxes)[0] >= 0.3) & (d.digits == ev.label)):
            return t - ev.frame
    return np.inf


def main(argv: list[str] | None = None) -> None:
    tune_process()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--steady", action="store_true", help="clips from a camera on a stand")
    p.add_argument("--shake", type=float, default=1.0, help="multiply the hand's shake (default: %(default)s)")
    p.add_argument("--cuts", action="store_true", help="each clip cut to the next one (another sheet)")
    p.add_argument("--compare", action="store_true", help="also raw readings, Hungarian matching (scipy) and no reuse")
    p.add_argument("--per-clip", action="store_true")
    p.add_argument("--shared", default=str(SHARED), help="the shared folder (realworld/, tools/score.py)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="inference engine, as the app's (default: auto)")
    args = p.parse_args(argv)

    shared = Path(args.shared)
    score = load_score(shared / "tools" / "score.py")
    set_torch_threads()
    rec = Recognizer(args.checkpoint, RecognizerConfig(args.device, args.backend))
    pipeline = Pipeline(rec)
    clip_list = clips(shared / "realworld", args.clips, args.steady, args.frames, args.shake)
    if args.cuts:
        clip_list = [cut(a, b) for a, b in zip(clip_list, clip_list[1:] + clip_list[:1])]
    frames = sum(len(c.frames) for c in clip_list)
    print(f"model {rec.name} on {rec.device} {rec.backend}; {len(clip_list)} {'steady ' if args.steady else ''}clips x "
          f"{frames // len(clip_list)} frames, {sum(len(b) for c in clip_list for b in c.boxes) / frames:.1f} "
          f"digits per frame")
    tracked = run(clip_list, pipeline, score, TrackerConfig(), args.per_clip)
    print(tracked.line("tracked (shipped)"))
    if args.compare or args.steady:
        fresh = run(clip_list, pipeline, score, TrackerConfig(reuse=False))
        print(fresh.line("tracked, no reuse"))
        same = np.mean([a == b for a, b in zip(tracked.readings, fresh.readings)])
        print(f"{'':28s} readings the same with and without reuse in {100 * same:.1f} % of frames")
    if args.compare:
        print(run(clip_list, pipeline, score, None).line("raw per-frame readings"))
        greedy = tracking.match_boxes
        tracking.match_boxes = hungarian_match
        try:
            print(run(clip_list, pipeline, score, TrackerConfig()).line("tracked, Hungarian matching"))
        finally:
            tracking.match_boxes = greedy


if __name__ == "__main__":
    main()
