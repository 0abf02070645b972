"""The model sweep: spec validation, grid expansion, Pareto front, and a tiny end-to-end run."""
import csv
import json

import numpy as np
import pytest

from backend.errors import UserError
from backend.model.checkpoint import load_model
from backend.model.vit import PRESETS, count_parameters
from backend.training.sweep import SweepSpec, config_name, expand, pareto_front, run_sweep


def test_grid_expands_to_the_product_and_skips_invalid_models():
    spec = SweepSpec(grid={"embed_dim": [32, 48], "num_heads": [2, 5]}, configs=[{"depth": 2}])
    configs, skipped = expand(spec)
    # 32 and 48 do not divide by 5 heads: two grid points dropped with a note each.
    base = PRESETS["accurate"]
    assert [(c.embed_dim, c.num_heads) for c in configs] == [(32, 2), (48, 2), (base.embed_dim, base.num_heads)]
    assert configs[-1].depth == 2 and len(skipped) == 2 and all("divisible" in s for s in skipped)
    assert len({config_name(c) for c in configs}) == len(configs)


@pytest.mark.parametrize("bad,match", [
    ({"grid": {"width": [64]}}, "unknown model fields"),
    ({"grid": {"depth": []}}, "non-empty list"),
    ({"train": {"epoch": 1}}, "unknown train keys"),
    ({"base": "huge"}, "unknown base preset"),
    ({"colour": "red"}, "unknown keys"),
])
def test_bad_specs_are_user_errors(tmp_path, bad, match):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=match):
        SweepSpec.load(path)


def test_spec_that_is_not_json(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("{grid: ")
    with pytest.raises(UserError, match="not valid JSON"):
        SweepSpec.load(path)


@pytest.mark.parametrize("cost,acc,front", [
    ([1, 2, 3], [0.5, 0.6, 0.7], [True, True, True]),  # each step buys accuracy
    ([1, 2, 3], [0.7, 0.6, 0.7], [True, False, False]),  # the cheapest is also the best
    ([3, 1, 2], [0.9, 0.8, 0.8], [True, True, False]),  # equal accuracy at a higher cost is dominated
])
def test_pareto_front(cost, acc, front):
    assert pareto_front(np.array(cost), np.array(acc)).tolist() == front


@pytest.mark.slow
def test_tiny_sweep_trains_scores_and_writes_csv_and_png(mnist_dir, tmp_path):
    spec = SweepSpec(base="fast", grid={"depth": [1, 2]}, configs=[{"embed_dim": 32, "depth": 1}],
                     train={"epochs": 1, "limit": 128, "batch_size": 64, "workers": 0, "device": "cpu"},
                     runs_dir=str(tmp_path / "runs"), results=str(tmp_path / "sweep"), n_test=100,
                     latency_batch=4, latency_seconds=0.01)
    rows = run_sweep(spec, str(mnist_dir))
    assert len(rows) == 3
    for r in rows:  # each run's checkpoint rebuilds the model it swept from the file alone
        model, _ = load_model(tmp_path / "runs" / r["name"] / "best.pt")
        assert (model.cfg.depth, model.cfg.embed_dim, count_parameters(model)) == (r["depth"], r["embed_dim"], r["params"])
    with open(tmp_path / "sweep.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["name"] for r in table] == [r["name"] for r in rows]
    assert {"params", "test_acc", "latency_b4_ms", "pareto_params", "pareto_latency"} <= set(table[0])
    params = [int(r["params"]) for r in table]
    assert params[1] > params[0] > params[2]  # depth 2 > depth 1 > narrower depth 1
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 and float(r["latency_b4_ms"]) > 0 for r in table)
    assert any(r["pareto_params"] == "True" for r in table)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    # Started again, the finished runs are resumed, not retrained: same scores.
    again = run_sweep(spec, str(mnist_dir))
    assert [r["test_acc"] for r in again] == [r["test_acc"] for r in rows]
