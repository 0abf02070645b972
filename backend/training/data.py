"""MNIST through torchvision, with augmentation that looks like our webcam crops."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from backend.errors import UserError
from backend.frame.mnist import MNIST_MEAN, MNIST_STD
from backend.training.config import AUGMENTS, DATA_ENV  # noqa: F401  (AUGMENTS: see train_transform)

DEFAULT_DATA_DIR = Path.home() / ".cache" / "digits-transformer"
VAL_SIZE = 5000  # held out from the 60k training images for model selection


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $DIGITS_DATA_DIR, else a per-user cache folder (downloaded on first use)."""
    return Path(data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


class StrokeWidth(torch.nn.Module):
    """Randomly thicken or thin the strokes of a (1, H, W) float image in [0, 1].

    Our preprocessing normalises stroke width, but not perfectly: marker and ballpoint crops
    still differ, so the model sees MNIST digits a little bolder and a little thinner.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        y = x[None]
        if torch.rand(()) < 0.6:
            y = F.max_pool2d(y, 3, stride=1, padding=1)  # dilate
            y = torch.lerp(x[None], y, torch.rand(()).item())  # by a fraction of a pixel
        else:
            y = -F.max_pool2d(-y, 2, stride=1)  # erode
            y = F.pad(y, (0, 1, 0, 1))
            y = torch.lerp(x[None], y, 0.5 * torch.rand(()).item())
        return y[0]


class RandomNoise(torch.nn.Module):
    """Sensor noise that survives thresholding: gaussian, with a random strength."""

    def __init__(self, max_sigma: float = 0.08):
        super().__init__()
        self.max_sigma = max_sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.randn_like(x) * self.max_sigma * torch.rand(())).clamp(0, 1)


def train_transform(augment: str = "webcam") -> v2.Compose:
    """Augmentation chosen for crops from a webcam after our preprocessing.

    "webcam": a hand-held sheet is tilted and sheared, the detector's box is a little off so the
    digit is scaled and shifted inside its 20x20 fit, ink is thicker or thinner than MNIST's,
    edges are soft from focus blur and low contrast, and there is sensor noise.
    "light": small tilts, shifts and scales only, for a short last phase at a low learning rate
    that settles the model on clean digits after it has learnt the hard ones.
    """
    if augment not in AUGMENTS:
        raise UserError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTS)}")
    if augment == "light":
        return _between_float_and_normalised(v2.RandomAffine(degrees=8, translate=(0.05, 0.05), scale=(0.92, 1.08)))
    return _between_float_and_normalised(
        v2.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.8, 1.12), shear=(-12, 12, -6, 6)),
        StrokeWidth(p=0.5),
        v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 0.9))], p=0.3),
        v2.RandomApply([v2.ColorJitter(contrast=(0.6, 1.0), brightness=(0.75, 1.0))], p=0.3),
        v2.RandomApply([RandomNoise(0.08)], p=0.3),
    )


def eval_transform() -> v2.Compose:
    return _between_float_and_normalised()


def _between_float_and_normalised(*steps) -> v2.Compose:
    """uint8 image -> float in [0, 1] -> `steps` -> normalised with MNIST's mean and std."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *steps,
                       v2.Normalize([MNIST_MEAN], [MNIST_STD])])


class TensorMNIST(datasets.MNIST):
    """torchvision's MNIST, giving (1, 28, 28) uint8 tensors instead of PIL images: the
    transforms then skip a PIL round trip that costs as much as the rest of them together."""

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, "MNIST", "raw")  # torchvision's layout, not the subclass name

    def __getitem__(self, i: int):
        x = self.data[i][None]
        return (self.transform(x) if self.transform else x), int(self.targets[i])


def mnist(data_dir: str | None, train: bool, transform=None) -> datasets.MNIST:
    """torchvision's MNIST from `data_dir`; downloads there when the files are missing."""
    root = resolve_data_dir(data_dir)
    try:
        return TensorMNIST(root=str(root), train=train, transform=transform, download=True)
    except Exception as e:  # offline and no local copy, or a corrupt one
        raise UserError(
            f"MNIST not available in {root} and could not be downloaded ({type(e).__name__}); "
            f"point --data-dir or ${DATA_ENV} at a folder holding MNIST/raw/") from None


class ArrayDigits(Dataset):
    """Extra 28x28 training digits from an .npz with `images` (N, 28, 28) uint8 white-on-black
    and `labels` (N,) int, such as crops of synthetic camera scenes cut by our own pipeline."""

    def __init__(self, path: str, transform=None):
        try:
            with np.load(path) as z:
                self.images = torch.from_numpy(z["images"].astype(np.uint8))[:, None]
                self.labels = torch.from_numpy(z["labels"].astype(np.int64))
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"cannot read extra training digits {path}: {e}") from None
        if self.images.shape[1:] != (1, 28, 28) or len(self.images) != len(self.labels):
            raise UserError(f"{path}: expected images (N, 28, 28) and N labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), int(self.labels[i])


def train_val_split(data_dir: str | None, limit: int | None = None, seed: int = 0,
                    extra: str | None = None, augment: str = "webcam") -> tuple[Dataset, Dataset]:
    """The training images split into (augmented train, clean validation), fixed by `seed`.
    `extra` adds an ArrayDigits .npz to the training side."""
    train_full = mnist(data_dir, True, train_transform(augment))
    val_full = copy.copy(train_full)  # the same images, read once, without augmentation
    val_full.transform = eval_transform()
    perm = torch.randperm(len(train_full), generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = perm[:VAL_SIZE], perm[VAL_SIZE:]
    if limit:
        train_idx, val_idx = train_idx[:limit], val_idx[: max(limit // 5, 100)]
    train = Subset(train_full, train_idx)
    if extra:
        train = ConcatDataset([train, ArrayDigits(extra, train_transform(augment))])
    return train, Subset(val_full, val_idx)


def test_set(data_dir: str | None, limit: int | None = None) -> Dataset:
    ds = mnist(data_dir, False, eval_transform())
    return Subset(ds, range(min(limit, len(ds)))) if limit else ds
