"""Smoke tests of the benchmark scripts on tiny settings: their tables have the expected shape and
the digits drawn are found. Timings are printed by the scripts, never asserted here."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.bench import bench_live, benchmark, photos
from backend.frame.synth import SceneConfig, demo_digits, digit_heights, scenes

ROOT = Path(__file__).resolve().parent.parent
FAST = str(ROOT / "artifacts" / "digits_vit_fast.pt")
SCORE = ROOT.parent / "shared" / "tools" / "score.py"


def test_digit_heights_fit_the_sheet():
    assert digit_heights(1280, 720, 200) == (22, 34)
    lo, hi = digit_heights(640, 480, 1)
    assert lo < hi == 120  # one digit: at most a quarter of the frame's height


def test_scaling_table_on_tiny_settings(mnist_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = benchmark.parse_args(["--sections", "frames", "--sizes", "640x480", "--digits", "1", "10",
                                 "--backends", "torch", "--checkpoint", FAST, "--repeats", "1",
                                 "--synthetic-frames", "1", "--data-dir", str(mnist_dir), "--json", str(out)])
    benchmark.run(args)
    result = json.loads(out.read_text())
    rows = result["frames"]
    assert [(r["set"], r["model"], r["backend"]) for r in rows] == [
        ("synth640x480/1", "digits_vit_fast.pt", "torch"), ("synth640x480/10", "digits_vit_fast.pt", "torch"),
        ("video640x480/10", "digits_vit_fast.pt", "torch"),  # the sheet of 10 again, as a camera sees it...
        ("video640x480/10 tracked", "digits_vit_fast.pt", "torch")]  # ...and as the live app reads it
    # Tracked, the sheet's digits show and are not read again: its crops did not change.
    assert rows[2]["model_calls"] == rows[2]["candidates"] and rows[3]["model_calls"] < rows[3]["candidates"]
    for r, n in zip(rows, (1, 10, 10, 10)):
        assert r["placed"] == n and r["found"] >= n - 1 and r["read_right"] >= 0.8 * n
        stages = sum(r[f"{s}_ms"] for s in benchmark.STAGES)
        assert r["total_ms"] == pytest.approx(stages, rel=1e-6)  # one frame: its stages add up to it
        assert r["total_ms"] <= r["total_p90_ms"] <= r["total_max_ms"] and r["cpu_ms"] >= 0 and r["draw_ms"] > 0
    assert len(result["load_avg_start"]) == 3 and result["model_info"][0]["preset"] == "fast"
    printed = capsys.readouterr().out
    assert "synth640x480/10" in printed and "found" in printed and "load average" in printed


def test_sizes_must_read_width_x_height(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--sizes", "640by480"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_score_frame_counts_found_and_read_right():
    from backend.frame.detections import Detections
    from backend.frame.pipeline import FrameResult

    truth = (np.array([[0, 0, 10, 20], [50, 0, 10, 20], [100, 0, 10, 20]]), np.array([3, 4, 5]))
    boxes = np.array([[1, 0, 10, 20], [50, 1, 10, 20]])  # the third digit is missed
    n = len(boxes)
    dets = Detections(boxes, np.array([3, 7]), np.ones(n), np.zeros((n, 10)), np.zeros((n, 7, 7)),
                      np.zeros((n, 7, 7)), np.zeros((n, 28, 28)))
    res = FrameResult(dets, dets.select(np.zeros(n, bool)), [])
    assert benchmark.score_frame(res, truth) == (2, 1)


@pytest.mark.skipif(not SCORE.is_file(), reason="the data set's score.py is not beside the project")
def test_photos_scores_a_tiny_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    cfg = SceneConfig(min_digits=3, max_digits=3, min_height=60, max_height=90, closeup_p=0.0,
                      light_on_dark_p=0.0, ruled_p=0.0, shadow_p=0.0, table_p=0.0)
    with open(tmp_path / "labels.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["file", "expected", "kind", "source_repo"])
        for i, sc in enumerate(scenes(2, 0, cfg, digits=demo_digits())):
            cv2.imwrite(str(folder / f"p{i}.png"), sc.image)
            w.writerow([f"p{i}.png", sc.text.replace(" ", ""), "page", f"source{i}"])
    score = str(shutil.copy(SCORE, tmp_path / "score.py"))
    assert photos.main([str(folder), str(tmp_path / "labels.tsv"), "--checkpoint", FAST, "--score-tool", score]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == ["source0", "source1", "all"]
    digits, acc = lines[-1].split()[1:3]
    assert digits == "6" and float(acc.rstrip("%")) >= 80


def test_photos_missing_files_are_one_line(tmp_path, capsys):
    labels = tmp_path / "labels.tsv"
    labels.write_text("file\texpected\tkind\tsource_repo\n")
    tool = tmp_path / "score.py"
    tool.write_text("")
    for args, what in (([str(labels), "--score-tool", str(tmp_path / "none.py")], "scoring tool not found"),
                       ([str(tmp_path / "none.tsv"), "--score-tool", str(tool)], "labels not found")):
        assert photos.main([str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {what}") and err.count("\n") == 1


def test_dim_halves_the_ink_contrast_darkens_and_adds_noise():
    img = np.full((60, 80, 3), 200, np.uint8)
    img[20:40, 30:34] = 40  # a stroke 160 grey levels darker than the paper
    quiet = photos.dim(img, 0.5, 0.0, np.random.default_rng(0)).astype(np.float32)
    assert abs(quiet[5:15, 5:25].mean() - 120) < 3  # the paper at 60 %
    assert abs(quiet[5:15, 5:25].mean() - quiet[25:35, 31:33].mean() - 48) < 8  # 160 * 0.5 * 0.6
    noisy = photos.dim(img, 0.5, 10.0, np.random.default_rng(0)).astype(np.float32)
    assert 5 < noisy[5:15, 5:25].std() < 12 and quiet[5:15, 5:25].std() < 1.5
    assert np.array_equal(noisy, photos.dim(img, 0.5, 10.0, np.random.default_rng(0)))  # seeded


def test_shadow_darkens_one_side_of_a_straight_edge():
    img = np.full((100, 200, 3), 200, np.uint8)
    out = photos.shadow(img, 0.5, 0.0, np.random.default_rng(3)).astype(np.float32)[..., 0]
    assert set(np.unique(out).tolist()) == {100.0, 200.0}  # half the light beyond the edge, none lost before it
    assert 0.2 < (out == 100).mean() < 0.8  # the edge runs through the middle
    soft = photos.shadow(img, 0.5, 20.0, np.random.default_rng(3))
    assert len(np.unique(soft)) > 10 and np.array_equal(soft, photos.shadow(img, 0.5, 20.0, np.random.default_rng(3)))


def test_framed_centres_the_digit_at_the_fill_asked_and_pads_with_the_border():
    img = np.full((100, 200), 200, np.uint8)
    img[40:60, 20:30] = 0  # a digit 20 px tall, 10 wide, 20 px from the left edge
    box = np.array([20, 40, 10, 20])
    for fill, aspect, shape in ((0.8, 4 / 3, (25, 33)), (0.5, 3 / 4, (40, 30)), (0.25, 1.0, (80, 80))):
        out = photos.framed(img, box, fill, aspect)
        rows, cols = np.nonzero(out == 0)
        assert out.shape == shape and len(rows) == 200  # the whole digit, once (the border is paper)
        assert abs(rows.mean() - (shape[0] - 1) / 2) <= 0.5 and abs(cols.mean() - (shape[1] - 1) / 2) <= 0.5
    assert photos.framed(img, box, 0.1, 1.0)[95:105, :5].min() == 200  # past the photo's left edge: paper
    cut = photos.framed(img, box, 1.25, 1.0)  # a frame that cuts the digit
    assert cut.shape == (16, 16) and (cut == 0).sum() == 16 * 10


@pytest.mark.skipif(not (bench_live.SHARED / "realworld").is_dir() or not SCORE.is_file(),
                    reason="the development photos are not beside the project")
def test_bench_live_runs_one_short_clip(capsys):
    bench_live.main(["--clips", "1", "--frames", "8", "--checkpoint", FAST])
    out = capsys.readouterr().out
    assert "1 clips x 8 frames" in out and "tracked (shipped)" in out and "accuracy" in out
