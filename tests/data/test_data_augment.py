"""Batch augmentations: exact against per-sample references, in range, seeded."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sedona_runtime.data.augment import PadCropFlip, PadCropRotateFlip, RandomResizedCropFlip, make_augment
from sedona_runtime.utils.errors import SedonaError


def _batch(n=16, size=12, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _gen(seed=5):
    return torch.Generator().manual_seed(seed)


def test_pad_crop_flip_equals_per_sample_reference():
    x, p = _batch(), 3
    out = PadCropFlip(p)(x, _gen())
    gen = _gen()  # replay the same draws, in the same order
    oy, ox = torch.randint(0, 2 * p + 1, (16,), generator=gen), torch.randint(0, 2 * p + 1, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    assert 0 < int(flip.sum()) < 16
    for i in range(16):
        ref = F.pad(x[i], (p, p, p, p))[:, oy[i] : oy[i] + 12, ox[i] : ox[i] + 12]
        ref = ref.flip(-1) if flip[i] else ref
        assert torch.equal(out[i], ref)  # a gather: bit-exact


def test_pad_crop_without_flip_only_shifts():
    x = _batch()
    out = PadCropFlip(2, flip=False)(x, _gen())
    gen = _gen()
    oy, ox = torch.randint(0, 5, (16,), generator=gen), torch.randint(0, 5, (16,), generator=gen)
    for i in range(16):
        assert torch.equal(out[i], F.pad(x[i], (2, 2, 2, 2))[:, oy[i] : oy[i] + 12, ox[i] : ox[i] + 12])


def test_identity_settings_of_the_resampling_augments_are_identity_or_mirror():
    # grid_sample at exact pixel centres reproduces the input; 1e-5 covers float32 rounding of the
    # normalized grid coordinates.
    x = _batch()
    for aug in (RandomResizedCropFlip(scale=(1.0, 1.0), ratio=(1.0, 1.0)), PadCropRotateFlip(padding=0, degrees=0.0)):
        out = aug(x, _gen())
        flipped = [torch.allclose(o, xi.flip(-1), atol=1e-5) for o, xi in zip(out, x)]
        same = [torch.allclose(o, xi, atol=1e-5) for o, xi in zip(out, x)]
        assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same), aug


def test_rrc_crops_along_the_axes():
    # A horizontal ramp: any axis-aligned crop, resized and maybe mirrored, is a ramp again. A swapped
    # or rotated affine would make rows differ; a wrong sign would break monotonicity.
    ramp = (torch.arange(16.0) + 0.5) / 16
    x = ramp.expand(64, 1, 16, 16).contiguous()
    out = RandomResizedCropFlip()(x, _gen())
    assert torch.allclose(out, out[:, :, :1, :].expand_as(out), atol=1e-6)  # every row the same
    steps = out[:, 0, 0, 1:] - out[:, 0, 0, :-1]
    rising, falling = (steps >= -1e-6).all(1), (steps <= 1e-6).all(1)
    assert (rising | falling).all() and rising.any() and falling.any()
    assert (out.amax((1, 2, 3)) - out.amin((1, 2, 3))).min() < 0.9  # some crops are strictly smaller


@pytest.mark.parametrize("aug", [PadCropFlip(4), PadCropRotateFlip(4, 30.0), RandomResizedCropFlip()], ids=repr)
def test_range_shape_determinism(aug):
    x = _batch(32, 16)
    x[:, :, :2] = 1.0  # include the extremes
    x[:, :, -2:] = 0.0
    a, b, c = aug(x, _gen(1)), aug(x, _gen(1)), aug(x, _gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_make_augment_kinds():
    assert repr(make_augment("cifar", 32)) == "PadCropFlip(padding=4, flip=True)"
    assert repr(make_augment("digits", 32)) == "PadCropFlip(padding=4, flip=False)"
    assert repr(make_augment("tiny_imagenet", 64)) == "PadCropRotateFlip(padding=8, degrees=15.0)"
    assert isinstance(make_augment("imagenet", 224), RandomResizedCropFlip)
    with pytest.raises(SedonaError, match="unknown augmentation kind"):
        make_augment("mnist", 28)
