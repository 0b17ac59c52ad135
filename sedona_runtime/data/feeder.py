"""Raw batches for a range of steps, decoded ahead in DataLoader worker processes when that pays.

Every batch is still a pure function of (seed, step) (`BatchStream.raw`): workers only compute them
ahead of time, in step order, so resume and the pipeline's exactness are unaffected by `workers`.
"""
from __future__ import annotations

import os
from typing import Iterator

from torch.utils.data import DataLoader, Dataset

from sedona_runtime.data.base import ImageDataset
from sedona_runtime.data.preprocess import RawBatch
from sedona_runtime.data.stream import BatchStream, eval_batch_count, eval_raw_batch

MAX_DEFAULT_WORKERS = 8


def decodes(dataset: ImageDataset) -> bool:
    """Whether reading a batch decodes files or runs user code (ImageFolder, a user's data set), rather than
    gathering rows of an in-memory tensor."""
    while hasattr(dataset, "parent"):  # a split of another data set
        dataset = dataset.parent
    return bool(getattr(dataset, "decodes", False))


def default_workers(dataset: ImageDataset, cores: int | None = None) -> int:
    """0 for in-memory data sets (a gather is faster than any hand-off); else half the cores this process
    may use (at most 8): the other half stays with the block processes' own threads."""
    if not decodes(dataset):
        return 0
    cores = cores if cores is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cores // 2))


class _Steps(Dataset):
    """Item i is the raw batch of step `start + i` (a DataLoader item is a whole batch)."""

    def __init__(self, stream: BatchStream, start: int, end: int) -> None:
        self.stream, self.start, self.end = stream, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> RawBatch:
        return self.stream.raw(self.start + i)


class _EvalBatches(Dataset):
    """Item i is evaluation batch i of a split, as stored."""

    def __init__(self, dataset: ImageDataset, batch_size: int) -> None:
        self.dataset, self.batch_size = dataset, batch_size

    def __len__(self) -> int:
        return eval_batch_count(self.dataset, self.batch_size)

    def __getitem__(self, i: int) -> RawBatch:
        return eval_raw_batch(self.dataset, self.batch_size, i)


def _loader(items: Dataset, workers: int) -> Iterator[RawBatch]:
    if workers <= 0:
        return (items[i] for i in range(len(items)))
    # spawn: the coordinator already runs RPC threads; forking a process with threads can deadlock.
    return iter(DataLoader(items, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=2,
                           multiprocessing_context="spawn", persistent_workers=False))


def train_batches(stream: BatchStream, start: int, end: int, workers: int = 0) -> Iterator[RawBatch]:
    """The raw batches of steps start..end-1, in order (computed ahead by `workers` processes if > 0)."""
    return _loader(_Steps(stream, start, end), workers)


def eval_batches_raw(dataset: ImageDataset, batch_size: int, workers: int = 0) -> Iterator[RawBatch]:
    """Every sample of `dataset` once, in index order, as stored (computed ahead by `workers` processes)."""
    return _loader(_EvalBatches(dataset, batch_size), workers)
