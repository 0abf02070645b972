"""Confidence calibration: the ECE measure, the temperature fit, and the shipped model's
confidences on a fixed set of MNIST test digits."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.training.calibrate import expected_calibration_error, fit_temperature


def test_ece_is_zero_when_confidence_matches_accuracy_and_the_gap_otherwise():
    conf = np.full(1000, 0.8)
    correct = np.arange(1000) % 5 != 0  # 80 % right
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-9)
    assert expected_calibration_error(np.full(1000, 0.99), correct) == pytest.approx(0.19)


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=g) * 4
    labels = torch.multinomial((logits / 2.5).softmax(1), 1, generator=g)[:, 0]
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


def test_inference_head_applies_the_temperature():
    from backend.model.vit import InferenceHead, PRESETS, VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(replace(PRESETS["fast"], temperature=2.0)).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.inference_mode():
        logits, probs = InferenceHead(model)(x)[:2]
        raw = model(x)
    assert torch.allclose(logits, raw / 2.0) and torch.allclose(probs, (raw / 2.0).softmax(1))


@pytest.mark.slow
def test_shipped_model_is_calibrated_on_mnist_test(mnist_dir):
    from backend.frame.mnist import MNIST_MEAN, MNIST_STD
    from backend.model.recognizer import Recognizer, RecognizerConfig
    from backend.training.data import mnist

    ds = mnist(str(mnist_dir), False)
    x = ((ds.data[:2000, None].float() / 255 - MNIST_MEAN) / MNIST_STD).numpy()
    p = Recognizer(None, RecognizerConfig(device="cpu", backend="torch")).predict(x)
    correct = p.digits == ds.targets[:2000].numpy()
    assert correct.mean() > 0.98
    assert expected_calibration_error(p.confidence, correct) < 0.015
