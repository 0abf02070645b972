"""Shared fixtures: the MNIST copy beside the project, and a tiny trained-shape checkpoint."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """MNIST root holding MNIST/raw: $DIGITS_DATA_DIR, else ../shared/data beside the repository."""
    d = Path(os.environ.get("DIGITS_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (d / "MNIST" / "raw").is_dir():
        pytest.fail(f"MNIST not found in {d}; set DIGITS_DATA_DIR to a folder holding MNIST/raw")
    return d
