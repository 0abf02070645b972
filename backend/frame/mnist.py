"""The one source of truth for what an MNIST digit looks like, and where MNIST itself is.

Training (backend.training.data) and inference (backend.frame.preprocess) both import these constants and
functions, so the crops the model sees at run time cannot drift from what it was trained on.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from backend.errors import UserError

DATA_ENV = "DIGITS_DATA_DIR"  # MNIST root when --data-dir is not given
DEFAULT_DATA_DIR = Path.home() / ".cache" / "digits-transformer"

MNIST_MEAN = 0.1307  # mean of MNIST training pixels scaled to [0, 1]
MNIST_STD = 0.3081  # their standard deviation
IMG_SIZE = 28  # MNIST image side
FIT_SIZE = 20  # MNIST digits are size-normalised to fit a 20x20 box...
# ...then placed in 28x28 so that their centre of mass is at the centre.
# Median stroke width of MNIST digits in 28x28 pixels, measured as 2 * area / boundary of the
# strokes binarised at half intensity (on 4x upscaled test images); preprocessing brings every
# crop's strokes to this width, measured the same way, so ballpoint and marker look alike.
MNIST_STROKE = 1.87


def fit_into(digit: np.ndarray, side: int, canvas: np.ndarray) -> tuple[int, int]:
    """A digit (h, w) resized into the top left of `canvas` (of the digit's type), its longer side
    `side` px and its aspect kept, area-averaged when shrunk: its (height, width) there, (0, 0)
    for an empty digit."""
    h, w = digit.shape
    if h == 0 or w == 0:
        return 0, 0
    s = side / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    cv2.resize(digit, (nw, nh), dst=canvas[:nh, :nw], interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return nh, nw


def fit_and_centre(digits: list[np.ndarray]) -> np.ndarray:
    """Place tight crops of digits into 28x28 MNIST canvases.

    digits: (h, w) uint8 each, a white digit (255) on black (0), cropped to its ink's bounding box.
    Returns (N, 28, 28) uint8: each digit scaled so that its longer side is 20 px (aspect kept,
    anti-aliased as MNIST is), shifted so that its centre of mass sits at the image centre (by
    bilinear interpolation, as a warp would). All the digits at once, past their resizing: a
    page's hundreds of crops each paid more for the calls than for the pixels.
    """
    n = len(digits)
    small = np.zeros((n, FIT_SIZE, FIT_SIZE), np.uint8)
    sizes = np.zeros((n, 2), np.int64)
    for k, d in enumerate(digits):
        sizes[k] = fit_into(d, FIT_SIZE, small[k])
    # The shift that brings the centre of mass to the middle (an empty digit: placed in the middle).
    xs = np.arange(FIT_SIZE)
    cols = small.sum(1, dtype=np.int64)
    mass = cols.sum(1)
    inked = mass > 0
    per = 1.0 / np.maximum(mass, 1)
    dx = np.where(inked, IMG_SIZE / 2 - (cols @ xs) * per, (IMG_SIZE - sizes[:, 1]) // 2)
    dy = np.where(inked, IMG_SIZE / 2 - (small.sum(2, dtype=np.int64) @ xs) * per, (IMG_SIZE - sizes[:, 0]) // 2)
    ix, iy = np.floor(dx).astype(np.int64), np.floor(dy).astype(np.int64)
    fx, fy = (dx - ix).astype(np.float32)[:, None, None], (dy - iy).astype(np.float32)[:, None, None]
    # Each digit placed a whole pixel short of its shift (and a pixel on, so the canvas's row r
    # holds the digit's row r - 1 - iy), then moved the fraction left: output pixel (y, x) is
    # digit (y - dy, x - dx). A centre of mass lies inside its digit: a shift is -5 to 14 px.
    margin = FIT_SIZE // 2 + 1
    canvas = np.zeros((n, IMG_SIZE + 2 * margin + 1, IMG_SIZE + 2 * margin + 1), np.float32)
    for k, (y, x, (nh, nw)) in enumerate(zip((iy + margin + 1).tolist(), (ix + margin + 1).tolist(), sizes.tolist())):
        canvas[k, y:y + nh, x:x + nw] = small[k, :nh, :nw]
    c = canvas[:, margin:margin + IMG_SIZE + 1, margin:margin + IMG_SIZE + 1]
    c = c[:, :, 1:] * (1 - fx) + c[:, :, :-1] * fx
    # Bilinear weights are >= 0 and sum to 1: the canvas stays in [0, 255], no clipping needed.
    return (c[:, 1:] * (1 - fy) + c[:, :-1] * fy).astype(np.uint8)


def normalize(batch_u8: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32 normalised exactly as in training."""
    x = batch_u8.astype(np.float32) * (1.0 / 255.0)
    return ((x - MNIST_MEAN) / MNIST_STD)[:, None]


def denormalize(x: np.ndarray) -> np.ndarray:
    """normalize's inverse, back to grey levels in [0, 1] (any shape)."""
    return x * MNIST_STD + MNIST_MEAN


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $DIGITS_DATA_DIR, else a per-user cache folder (downloaded on first use)."""
    return Path(data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def mnist(data_dir: str | None, train: bool, transform=None):
    """torchvision's MNIST from `data_dir` (downloaded there when the files are missing), giving
    (1, 28, 28) uint8 tensors instead of PIL images: the transforms then skip a PIL round trip
    that costs as much as the rest of them together. torchvision is imported here, on first use,
    so reading a frame never pays for it."""
    from torchvision import datasets

    class TensorMNIST(datasets.MNIST):
        @property
        def raw_folder(self) -> str:
            return os.path.join(self.root, "MNIST", "raw")  # torchvision's layout, not the subclass name

        def __getitem__(self, i: int):
            x = self.data[i][None]
            return (self.transform(x) if self.transform else x), int(self.targets[i])

    root = resolve_data_dir(data_dir)
    try:
        return TensorMNIST(root=str(root), train=train, transform=transform, download=True)
    except Exception as e:  # offline and no local copy, or a corrupt one
        raise UserError(
            f"MNIST not available in {root} and could not be downloaded ({type(e).__name__}); "
            f"point --data-dir or ${DATA_ENV} at a folder holding MNIST/raw/") from None


def mnist_arrays(data_dir: str | None = None, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test (or, with train, training) images (N, 28, 28) uint8 and labels (N,) int64."""
    ds = mnist(data_dir, train)
    return ds.data.numpy(), ds.targets.numpy().astype(np.int64)
