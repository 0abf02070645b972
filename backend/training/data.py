"""MNIST through torchvision, with augmentation that looks like our webcam crops."""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision.transforms import v2

from backend.errors import UserError
from backend.frame.mnist import MNIST_MEAN, MNIST_STD, mnist
from backend.training.config import AUGMENTS  # noqa: F401  (see train_transform)

VAL_SIZE = 5000  # held out from the 60k training images for model selection


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
    """Augmentation chosen for crops from a webcam after our preprocessing, per image.

    "webcam": a hand-held sheet is tilted and sheared, the detector's box is a little off so the
    digit is scaled and shifted inside its 20x20 fit, ink is thicker or thinner than MNIST's,
    edges are soft from focus blur and low contrast, and there is sensor noise.
    "styles": the same and more, for other hands than MNIST's, drawn for a whole batch at once by
    BatchAugment in the training loop (ten times cheaper than per image), so nothing here; the
    strokes that depend on the digit are WritingStyle's, drawn per image before this.
    "light": small tilts, shifts and scales only, for a short last phase at a low learning rate
    that settles the model on clean digits after it has learnt the hard ones.
    """
    if augment not in AUGMENTS:
        raise UserError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTS)}")
    if augment == "light":
        return _between_float_and_normalised(v2.RandomAffine(degrees=8, translate=(0.05, 0.05), scale=(0.92, 1.08)))
    if augment == "styles":
        return _between_float_and_normalised()
    return _between_float_and_normalised(
        v2.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.8, 1.12), shear=(-12, 12, -6, 6)),
        StrokeWidth(p=0.5),
        v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 0.9))], p=0.3),
        v2.RandomApply([v2.ColorJitter(contrast=(0.6, 1.0), brightness=(0.75, 1.0))], p=0.3),
        v2.RandomApply([RandomNoise(0.08)], p=0.3),
    )


def batch_augment(augment: str) -> "BatchAugment | None":
    """The batch-level augmentation the training loop applies for `augment` (only "styles")."""
    return BatchAugment() if augment == "styles" else None


class BatchAugment(torch.nn.Module):
    """The webcam augmentation and other hands' geometry for a whole (B, 1, H, W) batch of
    normalised images at once, each image with its own random draw (from torch's generator).

    One grid_sample moves every pixel: a tilt (±15°), scale (0.8-1.12), shift (±8 %), slant
    (shear ±22°, writers lean far more than MNIST's do) and, for half the images, an elastic
    wobble of up to `wobble_px` pixels, as one hand wobbles where another runs straight: a coarse
    `knots` x `knots` random field upsampled bicubically, as smooth as torchvision's
    ElasticTransform (a Gaussian-blurred field) at a tenth of its cost. Then, as in "webcam": strokes
    thicker or thinner (half), focus blur, lower contrast and sensor noise (30 % each).
    """

    def __init__(self, wobble_px: float = 1.6, knots: int = 4):
        super().__init__()
        self.wobble_px, self.knots = wobble_px, knots

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        u = x * MNIST_STD + MNIST_MEAN  # back to ink in [0, 1]
        u = F.grid_sample(u, self._grid(b, h, w), mode="bilinear", align_corners=False)
        u = self._stroke_width(u)
        u = torch.where(self._coin(b, 0.3), self._blur(u), u)
        contrast, bright = _uniform(b, 0.6, 1.0), _uniform(b, 0.75, 1.0)
        jitter = (contrast * u + (1 - contrast) * u.mean((1, 2, 3), keepdim=True)) * bright
        u = torch.where(self._coin(b, 0.3), jitter.clamp(0, 1), u)
        noisy = u + torch.randn_like(u) * 0.08 * _uniform(b, 0, 1)
        u = torch.where(self._coin(b, 0.3), noisy.clamp(0, 1), u)
        return (u - MNIST_MEAN) / MNIST_STD

    @staticmethod
    def _coin(b: int, p: float) -> torch.Tensor:
        return (torch.rand(b) < p).view(b, 1, 1, 1)

    def _grid(self, b: int, h: int, w: int) -> torch.Tensor:
        """(B, H, W, 2) sampling grid: where each output pixel reads the input."""
        angle = torch.deg2rad(_uniform(b, -15, 15)).flatten()
        scale = _uniform(b, 0.8, 1.12).flatten()
        sx, sy = torch.tan(torch.deg2rad(_uniform(b, -22, 22))).flatten(), torch.tan(torch.deg2rad(_uniform(b, -6, 6))).flatten()
        cos, sin = torch.cos(angle), torch.sin(angle)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
        shear = torch.stack([torch.stack([torch.ones(b), sx], -1), torch.stack([sy, torch.ones(b)], -1)], -2)
        forward = rot @ shear * scale.view(b, 1, 1)  # input -> output, in [-1, 1] coordinates
        shift = torch.rand(b, 2) * 0.32 - 0.16  # ±8 % of the side
        inverse = torch.linalg.inv(forward)
        theta = torch.cat([inverse, -(inverse @ shift[..., None])], -1)  # (B, 2, 3) output -> input
        grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
        coarse = (torch.rand(b, 2, self.knots, self.knots) * 2 - 1) * self.wobble_px
        coarse = coarse * self._coin(b, 0.5)
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # (B, 2, H, W) pixels
        return grid + field.permute(0, 2, 3, 1) * torch.tensor([2 / w, 2 / h])

    def _stroke_width(self, u: torch.Tensor) -> torch.Tensor:
        b = len(u)
        dilated = F.max_pool2d(u, 3, stride=1, padding=1)
        eroded = F.pad(-F.max_pool2d(-u, 2, stride=1), (0, 1, 0, 1))
        change, thicker = self._coin(b, 0.5), self._coin(b, 0.6)
        target = torch.where(thicker, dilated, eroded)
        amount = torch.where(thicker, _uniform(b, 0, 1), _uniform(b, 0, 0.5))
        return torch.where(change, torch.lerp(u, target, amount), u)

    @staticmethod
    def _blur(u: torch.Tensor) -> torch.Tensor:
        """3x3 Gaussian blur with sigma 0.1-0.9 drawn per image."""
        b, _, h, w = u.shape
        sigma = _uniform(b, 0.1, 0.9).view(b, 1)
        k = torch.exp(-torch.tensor([-1.0, 0.0, 1.0]) ** 2 / (2 * sigma**2))
        k = k / k.sum(1, keepdim=True)  # (B, 3)
        y = F.conv2d(F.pad(u.view(1, b, h, w), (1, 1, 0, 0), mode="replicate"), k.view(b, 1, 1, 3), groups=b)
        y = F.conv2d(F.pad(y, (0, 0, 1, 1), mode="replicate"), k.view(b, 1, 3, 1), groups=b)
        return y.view(b, 1, h, w)


def _uniform(b: int, lo: float, hi: float) -> torch.Tensor:
    """(B, 1, 1, 1) uniform draws in [lo, hi)."""
    return (lo + (hi - lo) * torch.rand(b)).view(b, 1, 1, 1)


class WritingStyle:
    """What other hands do to a digit, drawn onto a (1, 28, 28) uint8 MNIST image.

    MNIST's writers seldom write these, and real pages have them: a bar across the 7, or a narrow
    7 (read as 1 otherwise), a flag and foot on the 1 (continental), a closed top on the 4 (read
    as 9 otherwise), a loop at the foot of the 2 (read as 7 otherwise). Each is drawn with
    probability `p` on digits of its class; others pass unchanged. Randomness comes from torch's
    generator, so a seed fixes it.
    """

    def __init__(self, p: float = 0.4):
        self.p = p
        self.draw = {1: _flag_one, 2: _loop_two, 4: _close_four, 7: _bar_or_narrow_seven}

    def __call__(self, x: torch.Tensor, label: int) -> torch.Tensor:
        draw = self.draw.get(label)
        if draw is None or torch.rand(()) >= self.p:
            return x
        img = x[0].numpy().copy()
        ys, xs = np.nonzero(img > 127)
        if len(ys) < 5:
            return x
        draw(img, ys, xs, 2 if torch.rand(()) < 0.7 else 3)
        return torch.from_numpy(img)[None]


def _u(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def _line(img: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: int) -> None:
    cv2.line(img, (round(a[0]), round(a[1])), (round(b[0]), round(b[1])), 255, width, cv2.LINE_AA)


def _centre_col(ys: np.ndarray, xs: np.ndarray, r0: float, r1: float) -> float:
    sel = (ys >= r0) & (ys <= r1)
    return float(xs[sel].mean()) if sel.any() else float(xs.mean())


def _bar_seven(img, ys, xs, width) -> None:
    top, bottom = ys.min(), ys.max()
    row = top + _u(0.45, 0.62) * (bottom - top)
    c = _centre_col(ys, xs, row - 1, row + 1)
    half = _u(3.0, 5.5)
    _line(img, (c - half, row + _u(-1, 1)), (c + half, row + _u(-1, 1)), width)


def _bar_or_narrow_seven(img, ys, xs, width) -> None:
    """A bar across the 7, or a narrow 7: squeezed to 55-80 % of its width, as some hands write
    it (a short, flat top over a steep stem, which is not a 1's flag)."""
    if torch.rand(()) < 0.5:
        _bar_seven(img, ys, xs, width)
        return
    f, c = _u(0.55, 0.8), float(xs.mean())
    img[:] = cv2.warpAffine(img, np.float32([[f, 0, c * (1 - f)], [0, 1, 0]]), img.shape[::-1], flags=cv2.INTER_LINEAR)


def _flag_one(img, ys, xs, width) -> None:
    top, bottom = ys.min(), ys.max()
    c = _centre_col(ys, xs, top, top + 2)
    # Down to the left, and steeper and shorter than a 7's top: a long flat flag is a narrow 7
    # (a default trained with flags of up to 45 % of the height at 20-55 degrees read such 7s as 1).
    length = _u(0.15, 0.35) * (bottom - top)
    angle = math.radians(_u(30, 60))
    _line(img, (c, top), (c - length * math.cos(angle), top + length * math.sin(angle)), width)
    if torch.rand(()) < 0.4:  # a foot
        cb, half = _centre_col(ys, xs, bottom - 2, bottom), _u(3.0, 5.0)
        _line(img, (cb - half, bottom), (cb + half, bottom), width)


def _close_four(img, ys, xs, width) -> None:
    mid = xs.mean()
    left, right = xs < mid, xs >= mid
    if not left.any() or not right.any():
        return
    i, j = np.argmin(np.where(left, ys, 99)), np.argmin(np.where(right, ys, 99))
    if ys[i] - ys[j] < 3:  # tops level: a bar would draw a square 9, not a closed 4
        return
    _line(img, (xs[i], ys[i]), (xs[j], ys[j]), width)


def _loop_two(img, ys, xs, width) -> None:
    top, bottom = ys.min(), ys.max()
    low = ys >= top + 0.7 * (bottom - top)
    k = np.argmin(np.where(low, xs, 99))  # where the diagonal meets the foot
    r = _u(1.8, 3.2)
    cv2.ellipse(img, (round(xs[k] + r), round(ys[k] - r)), (round(r + 0.5), round(r)), 0, 0, 360, 255,
                max(1, width - 1), cv2.LINE_AA)


def eval_transform() -> v2.Compose:
    return _between_float_and_normalised()


def _between_float_and_normalised(*steps) -> v2.Compose:
    """uint8 image -> float in [0, 1] -> `steps` -> normalised with MNIST's mean and std."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *steps,
                       v2.Normalize([MNIST_MEAN], [MNIST_STD])])


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


class Styled(Dataset):
    """(uint8 image, label) items of `base` through `style(image, label)` (optional) and
    `transform`. With `soft` set (N, 10), an item also carries the teacher's logits for its
    image, for distillation."""

    def __init__(self, base: Dataset, transform, style=None):
        self.base, self.transform, self.style = base, transform, style
        self.soft: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        if self.style is not None:
            x = self.style(x, y)
        x = self.transform(x)
        return (x, y) if self.soft is None else (x, y, self.soft[i])

    def images(self) -> torch.Tensor:
        """Every image of `base`, unaugmented: (N, 1, 28, 28) uint8."""
        return self.base.images if isinstance(self.base, ArrayDigits) else self.base.data[:, None]


def styled_parts(ds: Dataset) -> list[Styled]:
    """The Styled datasets a train_val_split side is made of (through Subset and ConcatDataset)."""
    parts = ds.datasets if isinstance(ds, ConcatDataset) else [ds]
    return [p.dataset if isinstance(p, Subset) else p for p in parts]


def train_val_split(data_dir: str | None, limit: int | None = None, seed: int = 0,
                    extra: str | None = None, augment: str = "webcam") -> tuple[Dataset, Dataset]:
    """The training images split into (augmented train, clean validation), fixed by `seed`.
    `extra` adds an ArrayDigits .npz to the training side."""
    images = mnist(data_dir, True)  # read once, seen through both transforms
    style = WritingStyle() if augment == "styles" else None
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = perm[:VAL_SIZE], perm[VAL_SIZE:]
    if limit:
        train_idx, val_idx = train_idx[:limit], val_idx[: max(limit // 5, 100)]
    train = Subset(Styled(images, train_transform(augment), style), train_idx)
    if extra:
        train = ConcatDataset([train, Styled(ArrayDigits(extra), train_transform(augment), style)])
    return train, Subset(Styled(images, eval_transform()), val_idx)


def test_set(data_dir: str | None, limit: int | None = None) -> Dataset:
    ds = mnist(data_dir, False, eval_transform())
    return Subset(ds, range(min(limit, len(ds)))) if limit else ds


def test_batch(data_dir: str | None, n: int = 512) -> np.ndarray:
    """The first `n` MNIST test digits, normalised as the model sees them: (n, 1, 28, 28) float32."""
    ds = test_set(data_dir, n)
    return torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
