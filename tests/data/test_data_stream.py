"""BatchStream determinism (seed, random access, resume) and eval_batches."""
from __future__ import annotations

import pytest
import torch

from sedona_runtime.data.augment import PadCropFlip
from sedona_runtime.data.base import TensorImageDataset
from sedona_runtime.data.stream import BatchStream, eval_batches
from sedona_runtime.utils.errors import SedonaError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def _dataset(n: int = 50) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
    # Sample i carries its index in pixel (0,0,0) and label i, so batches can be traced back.
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return TensorImageDataset(images, torch.arange(n), MEAN, STD, n)


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_same_seed_same_batches_other_seed_other_batches():
    ds, aug = _dataset(), PadCropFlip(2)
    a, b, c = (BatchStream(ds, 8, s, aug) for s in (7, 7, 8))
    for step in (0, 3, 6, 11):
        assert _same(a.batch(step), b.batch(step))
        assert not torch.equal(a.batch(step)[1], c.batch(step)[1])


def test_random_access_equals_iteration_and_resume_equals_continuing():
    ds = _dataset()
    stream = BatchStream(ds, 8, 1, PadCropFlip(2))
    assert stream.steps_per_epoch == 6
    it = iter(stream)
    sequential = [next(it) for _ in range(20)]
    fresh = BatchStream(ds, 8, 1, PadCropFlip(2))
    for step in reversed(range(20)):  # any order, another object
        assert _same(fresh.batch(step), sequential[step])
    resumed = BatchStream(ds, 8, 1, PadCropFlip(2), start_step=13)
    for expect, got in zip(sequential[13:], resumed):
        assert _same(expect, got)


def test_each_epoch_is_a_fresh_permutation_without_repeats():
    ds = _dataset(48)
    stream = BatchStream(ds, 8, 3)
    epochs = [torch.cat([stream.batch(e * 6 + t)[1] for t in range(6)]) for e in range(3)]
    for labels in epochs:
        assert sorted(labels.tolist()) == list(range(48))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    # The pixel tagged with the sample index still matches its label: images and labels stay paired.
    x, y = stream.batch(4)
    tag = (x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255
    assert torch.allclose(tag, y.float(), atol=1e-3)  # float32 round trip of the normalization


def test_no_shuffle_drop_last_and_normalization():
    ds = _dataset(20)
    plain = BatchStream(ds, 8, 0, shuffle=False, drop_last=False)
    assert plain.steps_per_epoch == 3
    assert [plain.batch(t)[1].tolist() for t in range(4)] == [list(range(8)), list(range(8, 16)), list(range(16, 20)),
                                                             list(range(8))]
    x, _ = plain.batch(0)
    expect = (ds.images[:8].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, expect, atol=1e-6)
    assert BatchStream(ds, 8, 0).steps_per_epoch == 2  # drop_last: 20 // 8


def test_eval_batches_fixed_order_no_augmentation():
    ds = _dataset(20)
    batches = list(eval_batches(ds, 8))
    assert [len(y) for _, y in batches] == [8, 8, 4]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(20))
    assert torch.equal(torch.cat([x for x, _ in batches]), BatchStream(ds, 20, 0, shuffle=False).batch(0)[0])


def test_errors():
    with pytest.raises(SedonaError, match="the training set has 5 samples, fewer than one batch of 8"):
        BatchStream(_dataset(5), 8, 0)
    with pytest.raises(SedonaError, match="batch size must be positive"):
        BatchStream(_dataset(5), 0, 0)
