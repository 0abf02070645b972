"""Training curves and the attention gallery."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.model.checkpoint import save_atomic
from backend.errors import UserError
import app_fakes
from backend.model.vit import VisionTransformer
from backend.training.report import layer_maps, read_metrics, write_report

TINY = replace(app_fakes.TINY, depth=3)  # the gallery draws one panel per layer


def _row(epoch, acc):
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": acc - 0.02, "val_loss": 0.8 / epoch,
            "val_acc": acc, "lr": 1e-3, "epoch_time_s": 2.0, "world_size": 1}


def test_resumed_log_keeps_the_last_row_per_epoch(tmp_path):
    log = tmp_path / "metrics.jsonl"
    rows = [_row(1, 0.5), _row(2, 0.6), _row(2, 0.7), _row(3, 0.8)]  # epoch 2 ran twice (a resume)
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_metrics(log)
    assert [r["epoch"] for r in got] == [1, 2, 3] and got[1]["val_acc"] == 0.7


def test_bad_log_is_a_user_error(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(UserError, match="line 2"):
        read_metrics(log)


def test_layer_maps_are_one_per_layer_and_normalised():
    torch.manual_seed(0)
    model = VisionTransformer(TINY).eval()
    per_layer, rollout, probs = layer_maps(model, torch.randn(5, 1, 28, 28))
    g = TINY.grid  # token grid side
    assert per_layer.shape == (5, 3, g, g) and rollout.shape == (5, g, g) and probs.shape == (5, 10)
    np.testing.assert_allclose(per_layer.max(axis=(2, 3)), 1, atol=1e-6)
    assert not np.allclose(per_layer[:, 0], per_layer[:, -1])  # layers differ


def test_report_writes_curves_and_gallery(mnist_dir, tmp_path):
    save_atomic({"config": TINY.to_dict(), "model": VisionTransformer(TINY).state_dict(), "preset": "tiny",
                 "history": [_row(1, 0.5), _row(2, 0.7)]}, tmp_path / "run" / "best.pt")
    written = write_report(tmp_path / "run" / "best.pt", tmp_path / "report", str(mnist_dir))
    assert [p.name for p in written] == ["training_curves.png", "attention_gallery.png"]
    assert all(p.stat().st_size > 10_000 for p in written)


@pytest.mark.slow
def test_eval_with_report_adds_the_pictures(mnist_dir, tmp_path, capsys):
    from main import main

    model = VisionTransformer(TINY)
    save_atomic({"config": TINY.to_dict(), "model": model.state_dict(), "history": [_row(1, 0.5)]}, tmp_path / "m.pt")
    out = tmp_path / "eval"
    assert main(["--eval", "--report", "--checkpoint", str(tmp_path / "m.pt"), "--limit", "50",
                 "--data-dir", str(mnist_dir), "--report-dir", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "confusion_matrix.png", "training_curves.png", "attention_gallery.png"} <= names
    assert "MNIST test" in capsys.readouterr().err  # the evaluation's progress bar


@pytest.mark.parametrize("stored", [True, False], ids=["history", "log"])
def test_curves_show_the_stored_history_else_the_log_beside_the_checkpoint(mnist_dir, tmp_path, monkeypatch, stored):
    """A --init run stores the history it started from as earlier phases; the report draws all of
    it, not only the last phase that the run's own metrics.jsonl holds. A checkpoint without a
    history (an older one) is drawn from the metrics.jsonl beside it."""
    from backend.training import report

    history = [_row(1, 0.5), _row(2, 0.7), {**_row(1, 0.75), "phase": 1}]
    save_atomic({"config": TINY.to_dict(), "model": VisionTransformer(TINY).state_dict(),
                 **({"history": history} if stored else {})}, tmp_path / "best.pt")
    (tmp_path / "metrics.jsonl").write_text(json.dumps(history[-1]) + "\n")
    plotted = []
    monkeypatch.setattr(report, "plot_training_curves", lambda rows, path, title: plotted.append(rows))
    monkeypatch.setattr(report, "plot_attention_gallery", lambda *a: None)
    write_report(tmp_path / "best.pt", tmp_path / "report", str(mnist_dir))
    expected = [(0, 1), (0, 2), (1, 1)] if stored else [(1, 1)]
    assert [(r.get("phase", 0), r["epoch"]) for r in plotted[0]] == expected


def test_log_keeps_epoch_1_of_each_phase(tmp_path):
    history = [_row(1, 0.5), _row(2, 0.7), {**_row(1, 0.75), "phase": 1}]
    (tmp_path / "all.jsonl").write_text("\n".join(json.dumps(r) for r in history) + "\n")
    assert len(read_metrics(tmp_path / "all.jsonl")) == 3


def test_curves_of_several_phases_draw(tmp_path):
    from backend.training.report import plot_training_curves

    rows = [_row(1, 0.5), _row(2, 0.7), {**_row(1, 0.75), "phase": 1}, {**_row(2, 0.8), "phase": 1}]
    plot_training_curves(rows, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000
