"""Evaluation metrics on a hand-made set of predictions whose answers are known."""
import numpy as np
import pytest

from backend.training.evaluate import confusion, per_class

TRUE = np.array([0, 0, 0, 1, 1, 2])
PRED = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_counts_true_rows_against_predicted_columns():
    assert confusion(TRUE, PRED, n=4).tolist() == [[2, 1, 0, 0],
                                                   [0, 1, 1, 0],
                                                   [0, 0, 1, 0],
                                                   [0, 0, 0, 0]]
    cm = confusion(np.arange(10), np.roll(np.arange(10), 1))  # each digit read as the one before
    assert cm.shape == (10, 10) and cm.sum() == 10 and cm[3, 2] == 1 and np.trace(cm) == 0


def test_per_class_precision_recall_f1_and_support():
    got = per_class(confusion(TRUE, PRED, n=4))
    # class 0: 2 of 2 read as 0 were 0s, 2 of 3 zeros found; class 2: its one digit found, half of
    # what was read as 2 was a 2; class 3 neither occurs nor is predicted: zeros, not NaN.
    expected = {"0": (1.0, 2 / 3, 0.8, 3), "1": (0.5, 0.5, 0.5, 2), "2": (0.5, 1.0, 2 / 3, 1), "3": (0, 0, 0, 0)}
    assert list(got) == list(expected)
    for c, (precision, recall, f1, support) in expected.items():
        assert got[c]["precision"] == pytest.approx(precision, abs=1e-5)
        assert got[c]["recall"] == pytest.approx(recall, abs=1e-5)
        assert got[c]["f1"] == pytest.approx(f1, abs=1e-5)
        assert got[c]["support"] == support
