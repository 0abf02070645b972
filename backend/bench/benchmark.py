"""Speed benchmark: per-stage frame times, model latency per backend, headless video FPS, memory.

  python -m backend.bench.benchmark --realworld ../shared/realworld/frames640 ../shared/realworld/frames1280 \\
      --checkpoint artifacts/digits_vit.pt artifacts/digits_vit_fast.pt --json reports/benchmark.json

Prints tables and writes everything to a JSON file. All figures are medians over repeated runs
after warm-up; the machine's load average is recorded with them, because on a busy machine
every figure here is inflated. Nothing is asserted: this is a script that measures.

Sections:
  frames  per-frame stage times (detect, preprocess, model, reading; drawing apart) on real photo
          folders (median, p90, max) and on synthetic 640x480 / 1280x720 sheets of 1, 10, 50, 100
          and 200 digits, for each model and backend, with the digits found and read right of
          those placed, and the CPU time of the frame (wall time far above it means the machine's
          other jobs held the CPU); the sheets held to a camera again tracked, as the live app
          reads a video (crops that did not change are not read again)
  model   latency and throughput of the recognizer alone at batch 1, 4, 16, 64, per backend
  video   frames per second of a 640x480 video with a few digits per frame, headless, through
          camera_inferencer.py --no-display
  memory  peak resident memory of this process (and of the video run)
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.process import set_torch_threads, tune_process
from backend.errors import UserError
from backend.timing import timed_ms
from backend.live.overlay import HudInfo, OverlayConfig, draw_overlay
from backend.frame.detections import box_iou
from backend.frame.pipeline import Pipeline
from backend.model.device import BACKENDS
from backend.model.recognizer import Recognizer, RecognizerConfig
from backend.live.recorder import VideoRecorder
from backend.live.tracking import Tracker, read_tracked

ROOT = Path(__file__).resolve().parents[2]
BATCHES = (1, 4, 16, 64)
SIZES = ((640, 480), (1280, 720))
DIGITS = (1, 10, 50, 100, 200)
STAGES = ("detect", "preprocess", "model", "reading")  # the frame; drawing is timed apart


@dataclass
class FrameSet:
    name: str
    frames: list[np.ndarray]  # BGR uint8
    truth: list[tuple[np.ndarray, np.ndarray]] | None = None  # per frame (boxes (N, 4) x, y, w, h; labels (N,))
    held: bool = False  # one sheet held to a camera: timed tracked too, as the live app reads it


def load_folder(folder: str | os.PathLike) -> FrameSet:
    """Every image in `folder` (read, never copied)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--realworld: no such folder {folder}")
    frames = [cv2.imread(str(p)) for p in sorted(folder.iterdir())
              if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")]
    frames = [f for f in frames if f is not None]
    if not frames:
        raise UserError(f"--realworld: no readable images in {folder}")
    return FrameSet(folder.name, frames)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def synthetic_sets(n_frames: int, data_dir: str | None, sizes=SIZES, counts=DIGITS, seed: int = 0) -> list[FrameSet]:
    """Camera-like sheets from backend.frame.synth holding n digits each (fewer where they do not fit:
    the truth says how many were placed)."""
    from backend.frame.mnist import mnist_arrays
    from backend.frame.synth import page_config, scenes

    digits = mnist_arrays(data_dir)
    out = []
    for w, h in sizes:
        for n in counts:
            ss = list(scenes(n_frames, seed, page_config(w, h, n), digits=digits))
            out.append(FrameSet(f"synth{w}x{h}/{n}", [s.image for s in ss], [(s.boxes, s.labels) for s in ss]))
            if n == max(counts):  # the first sheet held up to a camera: the same page, fresh sensor noise
                rng = np.random.default_rng(seed)
                page = ss[0].image.astype(np.float32)
                shots = [np.clip(page + rng.normal(0, 3, page.shape), 0, 255).astype(np.uint8) for _ in range(n_frames)]
                out.append(FrameSet(f"video{w}x{h}/{n}", shots, [(ss[0].boxes, ss[0].labels)] * n_frames, held=True))
    return out


def _draw_fn():
    """The overlay's draw call, with the HUD the app shows."""
    cfg, hud = OverlayConfig(), HudInfo(device="cpu", model="bench")

    def draw(frame, res):
        hud.timings = res.timings
        return draw_overlay(frame, res.detections, res.numbers, cfg, hud)

    return draw


def score_frame(res, truth: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    """(found, read right): digits placed that an accepted detection covers (IoU >= 0.5), and of
    those the ones read as the digit placed there."""
    boxes, labels = truth
    if not len(boxes) or not len(res.detections):
        return 0, 0
    iou = box_iou(boxes, res.detections.boxes)  # (placed, accepted)
    best = iou.argmax(1)
    hit = iou[np.arange(len(boxes)), best] >= 0.5
    return int(hit.sum()), int((hit & (res.detections.digits[best] == labels)).sum())


def time_frames(pipe: Pipeline, fs: FrameSet, repeats: int, warmup: int = 3, tracked: bool = False) -> dict:
    """Per frame, over `repeats` passes through the frames: median ms per stage, the frame's median,
    p90 and max (detect + preprocess + model + reading; drawing apart), its CPU time, and the digits
    found and read right of those placed (without truth, as on photos: the digits reported).

    tracked: the frames are a video's, read as the live app reads them (backend.live.tracking:
    crops that did not change are not read again, and "reading" holds the tracking), after
    enough frames for its digits to show."""
    draw = _draw_fn()
    if tracked:
        tracker = Tracker()
        process = functools.partial(read_tracked, pipe, tracker)
        warmup = tracker.cfg.min_hits + 1
    else:
        process = pipe.process
    for i in range(warmup):
        process(fs.frames[i % len(fs.frames)])
    per_stage: dict[str, list[float]] = {s: [] for s in (*STAGES, "draw")}
    total, cpu, cands, calls, found = [], [], [], [], []  # found: (found, read right) per frame
    for _ in range(repeats):
        for i, f in enumerate(fs.frames):
            c0, t0 = time.process_time(), time.perf_counter()
            res = process(f)
            t1, c1 = time.perf_counter(), time.process_time()
            draw(f, res)
            t2 = time.perf_counter()
            wall = (t1 - t0) * 1e3
            for s in STAGES[:3]:
                per_stage[s].append(res.timings[s])
            per_stage["reading"].append(wall - res.timings["total"])  # reading order and results, after the model
            per_stage["draw"].append((t2 - t1) * 1e3)
            total.append(wall)
            cpu.append((c1 - c0) * 1e3)
            cands.append(len(res.detections) + len(res.rejected))
            calls.append(res.model_calls)
            found.append(score_frame(res, fs.truth[i]) if fs.truth else (len(res.detections), None))
    row = {"set": fs.name + (" tracked" if tracked else ""), "frames": len(fs.frames),
           "size": "x".join(map(str, fs.frames[0].shape[1::-1])),
           "placed": float(np.mean([len(t[1]) for t in fs.truth])) if fs.truth else None,
           "found": float(np.mean([f for f, _ in found])),
           "read_right": float(np.mean([r for _, r in found])) if fs.truth else None,
           "candidates": float(np.mean(cands)), "model_calls": float(np.mean(calls))}
    row.update({f"{s}_ms": float(np.median(v)) for s, v in per_stage.items()})
    row["total_ms"] = float(np.median(total))
    row["total_p90_ms"] = float(np.percentile(total, 90))
    row["total_max_ms"] = float(np.max(total))
    row["cpu_ms"] = float(np.median(cpu))
    row["fps"] = 1e3 / row["total_ms"]
    return row


def time_model(rec: Recognizer, batches=BATCHES, seconds: float = 1.0, data: np.ndarray | None = None) -> list[dict]:
    """Median latency and throughput of rec.predict per batch size, about `seconds` each."""
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        x = data[:b] if data is not None and len(data) >= b else rng.standard_normal((b, 1, 28, 28), np.float32)
        ts = timed_ms(lambda: rec.predict(x), seconds)
        med = float(np.median(ts))
        rows.append({"batch": b, "latency_ms": med, "p90_ms": float(np.percentile(ts, 90)),
                     "crops_per_s": b * 1e3 / med, "runs": len(ts)})
    return rows


def write_video(path: Path, n_frames: int, data_dir: str | None, size=(640, 480), fps: float = 30.0) -> float:
    """A 640x480 MJPG video of sheets with 3-5 digits swaying gently, a new sheet every second.

    Returns the mean number of digits per frame.
    """
    from backend.frame.synth import SceneConfig, scenes

    w, h = size
    cfg = SceneConfig(width=w, height=h, min_digits=3, max_digits=5, closeup_p=0.0)
    n_scenes = max(1, int(np.ceil(n_frames / fps)))
    shots = list(scenes(n_scenes, 1, cfg, data_dir))
    rng = np.random.default_rng(0)
    counts = []
    with VideoRecorder(path, fps=fps) as writer:
        for i in range(n_frames):
            s = shots[min(i // int(fps), n_scenes - 1)]
            t = i / fps
            M = cv2.getRotationMatrix2D((w / 2, h / 2), 1.5 * np.sin(1.3 * t), 1.0 + 0.02 * np.sin(0.9 * t))
            M[:, 2] += (6 * np.sin(1.1 * t), 4 * np.cos(0.8 * t))
            frame = cv2.warpAffine(s.image, M, (w, h), borderMode=cv2.BORDER_REPLICATE)
            frame = cv2.add(frame, rng.integers(0, 4, frame.shape, dtype=np.uint8))
            writer.write(frame)
            counts.append(len(s.labels))
    return float(np.mean(counts))


def time_video(video: Path, n_frames: int, backend: str, threads: int | None, checkpoint: str | None) -> dict:
    """Headless FPS through the whole app loop (`camera_inferencer.py --no-display`)."""
    cmd = [sys.executable, str(ROOT / "camera_inferencer.py"), "--source", str(video), "--no-display",
           "--backend", backend]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd += ["--max-frames", str(n_frames)]  # kept last: replaced per run below
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    runs = []
    for n in (max(10, n_frames // 10), n_frames):  # the difference removes start-up time
        t0 = time.perf_counter()
        r = subprocess.run(cmd[:-1] + [str(n)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["?"])[-1]
            return {"backend": backend, "how": f"camera_inferencer.py failed: {tail[:200]}", "fps": None}
        m = re.search(r"(\d+) frames at ([\d.]+) FPS", r.stderr)
        runs.append((n, wall, float(m.group(2)) if m else None, int(m.group(1)) if m else n))
    (n1, w1, _, f1), (n2, w2, app_fps, f2) = runs
    # Too short a video to tell the frames' time from start-up noise: the app's own rate.
    fps = (f2 - f1) / (w2 - w1) if w2 - w1 > 0.2 * w2 else app_fps
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"backend": backend, "how": "camera_inferencer.py --no-display (subprocess)", "frames": f2,
            "fps": fps, "fps_reported_by_app": app_fps,
            "wall_s": w2, "peak_rss_mb_app": peak, "command": " ".join(cmd)}


def mflops_per_crop(rec: Recognizer) -> float:
    """Floating-point operations of reading one crop (the graph both engines run: the model, its
    attention maps and probabilities), in millions."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from backend.model.vit import InferenceHead

    model = rec.model.cpu() if rec.device.type == "cpu" or rec.backend == "onnx" else rec.model
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        InferenceHead(model)(torch.zeros(1, 1, 28, 28, device=next(model.parameters()).device))
    return fc.get_total_flops() / 1e6


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), info["cpu"])
    except OSError:
        pass
    return info


def _fmt(v, nd=2) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def print_table(title: str, rows: list[dict], cols: list[tuple[str, str, int]]) -> None:
    print(f"\n{title}")
    cells = [[h for h, _, _ in cols]] + [[_fmt(r.get(k), nd) for _, k, nd in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    for j, line in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def available_backends(requested: list[str]) -> list[str]:
    out = []
    for b in requested:
        if b == "onnx":
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                print("note: onnxruntime is not installed; skipping the onnx backend "
                      "(pip install onnx onnxruntime)", file=sys.stderr)
                continue
        out.append(b)
    return out


def run(args: argparse.Namespace) -> dict:
    backends = available_backends(args.backends)
    load0 = os.getloadavg()
    result: dict = {"machine": machine_info(), "load_avg_start": load0,
                    "checkpoint": [c or "default" for c in args.checkpoint], "threads": args.threads,
                    "model_info": [], "frames": [], "model": [], "video": []}
    # (model name, backend) -> recognizer, every model with every backend
    recs: dict[tuple[str, str], Recognizer] = {}
    for ckpt in args.checkpoint:
        for b in backends:
            rec = Recognizer(ckpt, RecognizerConfig(args.device if b == "torch" else "cpu", b, args.threads))
            recs[rec.name, b] = rec
        info = {"name": rec.name, "checkpoint": ckpt or "default", "params": rec.params, "preset": rec.preset,
                "device": str(rec.device), "mflops_per_crop": mflops_per_crop(rec)}
        result["model_info"].append(info)
        print(f"model {info['name']} ({info['preset']}): {info['params']:,} parameters, "
              f"{info['mflops_per_crop']:.1f} MFLOP per crop; backends {', '.join(backends)}; "
              f"{rec.threads} inference thread(s)")
    if "model" in args.sections:
        for (m, b), rec in recs.items():
            for row in time_model(rec, seconds=args.seconds):
                result["model"].append({"model": m, "backend": b, **row})
        print_table("model alone (Recognizer.predict, ms median)", result["model"],
                    [("model", "model", 0), ("backend", "backend", 0), ("batch", "batch", 0),
                     ("latency ms", "latency_ms", 2), ("p90 ms", "p90_ms", 2), ("crops/s", "crops_per_s", 0)])
    if "frames" in args.sections:
        sets = [load_folder(d) for d in args.realworld]
        if not args.no_synthetic:
            sets += synthetic_sets(args.synthetic_frames, args.data_dir, args.sizes, args.digits)
        for fs in sets:
            for (m, b), rec in recs.items():
                for tracked in (False, True) if fs.held else (False,):
                    row = time_frames(Pipeline(rec), fs, args.repeats, tracked=tracked)
                    result["frames"].append({"model": m, "backend": b, **row})
                    print(f"  {row['set']:<30} {m:<20} {b:<5} frame {row['total_ms']:.2f} ms, load "
                          f"{os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        print_table("per frame (ms, median; frame = detect + preprocess + model + reading, drawing apart; "
                    "read = crops through the model; cpu = CPU time of the frame)", result["frames"],
                    [("set", "set", 0), ("model", "model", 0), ("backend", "backend", 0), ("placed", "placed", 1),
                     ("found", "found", 1), ("right", "read_right", 1), ("read", "model_calls", 1),
                     ("detect", "detect_ms", 2),
                     ("prep", "preprocess_ms", 2), ("model", "model_ms", 2), ("reading", "reading_ms", 2),
                     ("frame", "total_ms", 2), ("p90", "total_p90_ms", 2), ("max", "total_max_ms", 2),
                     ("cpu", "cpu_ms", 2), ("draw", "draw_ms", 2)])
    if "video" in args.sections:
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(args.video) if args.video else Path(tmp) / "digits640.avi"
            per_frame = None if args.video else write_video(video, args.video_frames, args.data_dir)
            for ckpt, info in zip(args.checkpoint, result["model_info"]):
                for b in backends:
                    row = time_video(video, args.video_frames, b, args.threads, ckpt)
                    row["model"], row["digits_per_frame"] = info["name"], per_frame
                    result["video"].append(row)
        print_table("headless video (640x480)", result["video"],
                    [("model", "model", 0), ("backend", "backend", 0), ("fps", "fps", 1), ("frames", "frames", 0),
                     ("digits/frame", "digits_per_frame", 1), ("how", "how", 0)])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load_avg_end"] = os.getloadavg()
    print(f"\npeak RSS {result['peak_rss_mb']:.0f} MB (this process); load average "
          f"{load0[0]:.2f} at start, {result['load_avg_end'][0]:.2f} at end on {os.cpu_count()} CPUs")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--realworld", nargs="*", default=[], metavar="DIR", help="folders of real photos to time")
    p.add_argument("--checkpoint", nargs="+", default=[None], metavar="CKPT",
                   help="model checkpoints, each timed with every backend (default: the shipped one)")
    p.add_argument("--backends", nargs="+", choices=[b for b in BACKENDS if b != "auto"], default=["torch", "onnx"],
                   help="recognizer backends to compare (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="device of the torch backend (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: half the cores, 1 to 4)")
    p.add_argument("--sections", nargs="+", choices=["model", "frames", "video"], default=["model", "frames", "video"])
    p.add_argument("--repeats", type=int, default=5, help="passes over each frame set (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=1.5, help="time per model batch size (default: %(default)s)")
    p.add_argument("--synthetic-frames", type=int, default=10, help="frames per synthetic set (default: %(default)s)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=list(SIZES), metavar="WxH",
                   help="synthetic frame sizes (default: 640x480 1280x720)")
    p.add_argument("--digits", nargs="+", type=int, default=list(DIGITS), metavar="N",
                   help="digits per synthetic frame (default: %(default)s)")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic frame sets")
    p.add_argument("--video", default=None, help="a 640x480 video to time instead of the generated one")
    p.add_argument("--video-frames", type=int, default=600, help="frames of the video run (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="MNIST root for the synthetic frames (default: $DIGITS_DATA_DIR)")
    p.add_argument("--json", default=None, metavar="OUT", help="write all figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    tune_process()
    args = parse_args(argv)
    set_torch_threads(args.threads)
    try:
        run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
