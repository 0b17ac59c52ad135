"""Batches read ahead by DataLoader workers are the batches the step order defines: the same with any count."""
from __future__ import annotations

import pytest
import torch

from sedona_runtime.data import BatchStream, DataConfig, build_data
from sedona_runtime.data.feeder import default_workers, eval_batches_raw, train_batches
from sedona_runtime.data.stream import eval_raw_batches


def _same(a, b) -> bool:
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and (a.draws is None) == (b.draws is None) and (
        a.draws is None or all(torch.equal(a.draws[k], b.draws[k]) for k in a.draws))


@pytest.mark.timeout(120)
def test_workers_change_nothing_but_who_reads():
    bundle = build_data(DataConfig(dataset="synthetic", synthetic_size=96, image_size=8))
    stream = BatchStream(bundle.train, 16, 3, bundle.augment)
    alone = list(train_batches(stream, 2, 9, workers=0))
    ahead = list(train_batches(stream, 2, 9, workers=2))
    assert len(alone) == len(ahead) == 7 and all(_same(a, b) for a, b in zip(alone, ahead))
    assert all(_same(a, stream.raw(2 + i)) for i, a in enumerate(alone))  # a pure function of the step
    evals = list(eval_batches_raw(bundle.test, 10, workers=2))
    assert all(_same(a, b) for a, b in zip(evals, eval_raw_batches(bundle.test, 10)))
    assert sum(len(b.y) for b in evals) == len(bundle.test)


def test_workers_only_where_reading_decodes():
    from sedona_runtime.data.base import TensorImageDataset

    images, labels = torch.zeros(8, 3, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64)
    assert default_workers(TensorImageDataset(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=16) == 0

    class Decoding(TensorImageDataset):
        decodes = True

    assert default_workers(Decoding(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=16) == 8
    assert default_workers(Decoding(images, labels, (0.5,) * 3, (0.5,) * 3, 10), cores=2) == 1
