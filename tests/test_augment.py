"""The writing-style augmentations and distillation: they change the digit, keep it in range,
and repeat exactly under a seed."""
from __future__ import annotations

import pytest
import torch

from backend.training.data import BatchAugment, Styled, WritingStyle, mnist, train_transform
from backend.training.train import distill_loss


@pytest.fixture(scope="module")
def digits(mnist_dir):
    """The first ten training images of each of 1, 2, 3, 7 as (1, 28, 28) uint8, by label."""
    ds = mnist(str(mnist_dir), True)
    return {d: [ds[int(i)][0] for i in (ds.targets == d).nonzero()[:10, 0]] for d in (1, 2, 3, 7)}


@pytest.mark.parametrize("label", [1, 2])
def test_writing_style_adds_ink_to_its_digits_in_range_and_repeatably(digits, label):
    style = WritingStyle(p=1.0)
    torch.manual_seed(0)
    a = [style(x, label) for x in digits[label]]
    torch.manual_seed(0)
    b = [style(x, label) for x in digits[label]]
    for x, y, z in zip(digits[label], a, b):
        assert y.shape == x.shape and y.dtype == torch.uint8 and torch.equal(y, z)
        assert (y >= x).all()  # strokes are added, never erased
    assert sum(int((y > 127).sum() - (x > 127).sum()) > 3 for x, y in zip(digits[label], a)) >= 8


def test_a_seven_gets_a_bar_or_is_narrowed(digits):
    torch.manual_seed(0)
    style = WritingStyle(p=1.0)
    kinds = set()

    def width(img):
        cols = torch.nonzero((img[0] > 127).any(0))[:, 0]
        return int(cols[-1] - cols[0] + 1)

    for x in digits[7]:
        y = style(x, 7)
        assert y.shape == x.shape and y.dtype == torch.uint8
        if (y >= x).all():  # a bar drawn across
            assert int((y > 127).sum() - (x > 127).sum()) > 3
            kinds.add("bar")
        else:  # squeezed sideways, as tall as before
            assert width(y) <= 0.85 * width(x) + 1
            assert torch.equal((y[0] > 127).any(1), (x[0] > 127).any(1))
            kinds.add("narrow")
    assert kinds == {"bar", "narrow"}


def test_writing_style_leaves_other_digits_and_p0_alone(digits):
    for x in digits[3]:
        assert torch.equal(WritingStyle(p=1.0)(x, 3), x)
    for x in digits[7]:
        assert torch.equal(WritingStyle(p=0.0)(x, 7), x)


def test_batch_augment_changes_each_image_in_range_and_is_seeded(digits):
    from backend.frame.mnist import MNIST_MEAN, MNIST_STD

    ds = Styled([(x, 7) for x in digits[7]], train_transform("styles"), WritingStyle(p=1.0))
    torch.manual_seed(3)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    a = BatchAugment()(x)
    torch.manual_seed(3)
    b = BatchAugment()(torch.stack([ds[i][0] for i in range(len(ds))]))
    assert torch.equal(a, b) and a.shape == (10, 1, 28, 28)
    ink = a * MNIST_STD + MNIST_MEAN
    assert ink.min() >= -1e-5 and ink.max() <= 1 + 1e-5
    assert ((a - x).abs().flatten(1).amax(1) > 0.5).all()  # every image was moved or restyled
    assert (ink.flatten(1).sum(1) > 10).all()  # and the digit is still there


def test_soft_targets_travel_with_their_image_and_distillation_loss():
    ds = Styled([(torch.zeros(1, 28, 28, dtype=torch.uint8), 4)] * 3, train_transform("light"))
    assert len(ds[0]) == 2
    ds.soft = torch.arange(30.0).reshape(3, 10)
    x, y, soft = ds[2]
    assert y == 4 and torch.equal(soft, torch.arange(20.0, 30.0))
    logits = torch.randn(8, 10)
    assert distill_loss(logits, logits, 2.0).abs() < 1e-6
    assert distill_loss(logits, torch.randn(8, 10), 2.0) > 0.01
