"""Preprocess: the same input as before, its constants put on the device once (CUDA: tests/pipeline/test_cuda.py)."""
from __future__ import annotations

import pickle

import torch

from sedona_runtime.data.augment import PadCropFlip, PadCropRotateFlip
from sedona_runtime.data.preprocess import Preprocess, RawBatch

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


def _raw(augment):
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g)
    return RawBatch(x, torch.arange(4), augment.draw(4, 8, 8, g))


def test_preprocess_is_the_reference_formula_bitwise():
    for augment in (PadCropFlip(2), PadCropRotateFlip(2, 10.0)):
        raw = _raw(augment)
        ref = augment.apply(raw.x.float().div_(255.0), raw.draws)
        ref = (ref - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        assert torch.equal(Preprocess(MEAN, STD, augment)(raw), ref)


def test_constants_are_made_once_per_device_and_not_pickled():
    pre = Preprocess(MEAN, STD, PadCropFlip(2))
    pre(_raw(PadCropFlip(2)))
    first = pre._on(torch.device("cpu"), torch.float32)
    pre(_raw(PadCropFlip(2)))
    assert pre._on(torch.device("cpu"), torch.float32)[0] is first[0]  # no new tensor (CUDA: no new H2D copy)
    copy = pickle.loads(pickle.dumps(pre))  # as the pipeline ships it to block 1
    assert copy._constants == {} and repr(copy) == repr(pre)
    assert torch.equal(copy(_raw(PadCropFlip(2))), pre(_raw(PadCropFlip(2))))
