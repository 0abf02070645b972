"""Shared fixtures: the MNIST copy beside the project, and a tiny trained-shape checkpoint."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """MNIST root holding MNIST/raw: $DIGITS_DATA_DIR, else ../shared/data beside the repository."""
    d = Path(os.environ.get("DIGITS_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (d / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found in {d}; set DIGITS_DATA_DIR to a folder holding MNIST/raw")
    return d


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A randomly initialised tiny ViT checkpoint (fast on any CPU)."""
    from app_fakes import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def pipeline(ckpt):
    """The real pipeline on the tiny model. A random model is rarely confident: accept
    everything so that readings flow through."""
    from backend.frame.pipeline import Pipeline, PipelineConfig
    from backend.model.recognizer import Recognizer, RecognizerConfig

    return Pipeline(Recognizer(ckpt, RecognizerConfig(device="cpu")), PipelineConfig(min_confidence=0.0))


@pytest.fixture(scope="session")
def digits(mnist_dir):
    """MNIST test digits (N, 28, 28) uint8 and their labels (N,) int64, read once per session."""
    from backend.frame.mnist import mnist_arrays

    return mnist_arrays(str(mnist_dir))


@pytest.fixture(scope="session")
def shipped_pipeline():
    """The real pipeline on the shipped default model (artifacts/digits_vit.pt), at its default settings."""
    from backend.frame.pipeline import Pipeline
    from backend.model.recognizer import Recognizer, RecognizerConfig

    shipped = ROOT / "artifacts" / "digits_vit.pt"
    if not shipped.is_file():
        pytest.fail(f"no shipped checkpoint {shipped}")
    return Pipeline(Recognizer(shipped, RecognizerConfig(device="cpu")))
