"""BatchStream: training batches addressable by global step, a pure function of (seed, epoch, step)."""
from __future__ import annotations

import math
from typing import Iterator

import torch

from sedona_runtime.data.augment import Augment
from sedona_runtime.data.base import ImageDataset
from sedona_runtime.data.preprocess import Preprocess, RawBatch
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.seed import make_generator, seeded_globals


def normalize(x: torch.Tensor, dataset: ImageDataset) -> torch.Tensor:
    """A [0,1] float batch (N,C,H,W) normalized with the data set's per-channel mean and std."""
    c = x.shape[1]
    mean = torch.tensor(dataset.mean, dtype=x.dtype).view(1, c, 1, 1)
    std = torch.tensor(dataset.std, dtype=x.dtype).view(1, c, 1, 1)
    return x.sub_(mean).div_(std)


def _get_batch(dataset: ImageDataset, indices: torch.Tensor,
               *seed_parts: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    # A user's data set may draw random transforms from the global generators: seeding them from
    # (seed, step) keeps every batch a pure function of its step (data.user.UserImageDataset).
    if getattr(dataset, "seeded_by_step", False):
        with seeded_globals(*seed_parts):
            return dataset.get_batch(indices)
    return dataset.get_batch(indices)


class BatchStream:
    """Deterministic training batches: batch `step` depends only on (seed, step) and the data set.

    Epoch e = step // steps_per_epoch visits the samples in the order of a permutation drawn from a
    generator seeded by (seed, e); the batch's augmentation draws from a generator seeded by
    (seed, step), sample i taking the i-th draws. So `batch(t)` can be computed in any order, on any
    process, and resuming at step t continues exactly where an uninterrupted run would be.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int,
        augment: Augment | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        start_step: int = 0,
    ) -> None:
        n = len(dataset)
        if batch_size < 1:
            raise SedonaError(f"batch size must be positive, got {batch_size}")
        if n == 0 or (drop_last and n < batch_size):
            raise SedonaError(f"the training set has {n} samples, fewer than one batch of {batch_size}")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.augment, self.shuffle, self.drop_last = augment, shuffle, drop_last
        self.start_step = start_step
        self.steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        self._order_epoch: int | None = None
        self._order: torch.Tensor | None = None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch` (cached: consecutive steps reuse it)."""
        if self._order_epoch != epoch:
            n = len(self.dataset)
            if self.shuffle:
                self._order = torch.randperm(n, generator=make_generator("batch-order", self.seed, epoch))
            else:
                self._order = torch.arange(n)
            self._order_epoch = epoch
        assert self._order is not None
        return self._order

    def indices(self, step: int) -> torch.Tensor:
        """Sample indices of batch `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, pos = divmod(step, self.steps_per_epoch)
        start = pos * self.batch_size
        return self.epoch_order(epoch)[start : start + self.batch_size]

    @property
    def preprocess(self) -> Preprocess:
        """What turns this stream's raw batches into the network's input (scaling, augmentation, norm)."""
        return Preprocess(self.dataset.mean, self.dataset.std, self.augment)

    def raw(self, step: int) -> RawBatch:
        """Batch `step` as stored (uint8 or a user's float images), with its augmentation's draws."""
        x, y = _get_batch(self.dataset, self.indices(step), "user-transforms", self.seed, step)
        draws = None
        if self.augment is not None:
            n, _, h, w = x.shape
            draws = self.augment.draw(n, h, w, make_generator("augment", self.seed, step))
        return RawBatch(x, y, draws)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float32 normalized (N,C,H,W), y int64 (N)) of global step `step`, on the CPU."""
        raw = self.raw(step)
        return self.preprocess(raw), raw.y

    def iter_from(self, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches step, step + 1, ... (iteration-based training decides when to stop)."""
        while True:
            yield self.batch(step)
            step += 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(self.start_step)


def eval_batch_count(dataset: ImageDataset, batch_size: int) -> int:
    """How many evaluation batches cover `dataset` (the last may be smaller)."""
    return -(-len(dataset) // batch_size)


def eval_raw_batch(dataset: ImageDataset, batch_size: int, i: int) -> RawBatch:
    """Evaluation batch i: samples i*batch_size.. in index order, as stored, not augmented."""
    start = i * batch_size
    x, y = _get_batch(dataset, torch.arange(start, min(start + batch_size, len(dataset))), "user-transforms-eval", start)
    return RawBatch(x, y)


def eval_raw_batches(dataset: ImageDataset, batch_size: int) -> Iterator[RawBatch]:
    """Every sample once in index order, as stored, not augmented; the last batch may be smaller."""
    for i in range(eval_batch_count(dataset, batch_size)):
        yield eval_raw_batch(dataset, batch_size, i)


def eval_batches(dataset: ImageDataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every sample once in index order, normalized, not augmented (CPU); the last batch may be smaller."""
    preprocess = Preprocess(dataset.mean, dataset.std)
    for raw in eval_raw_batches(dataset, batch_size):
        yield preprocess(raw), raw.y
