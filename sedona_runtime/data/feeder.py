"""Raw batches in the order a run needs them, decoded ahead in DataLoader worker processes when that pays.

A run reads a fixed sequence of batches: training steps, and evaluation rounds (validation, test) at
fixed points between them. `read_ahead` takes that whole sequence (a list of Tasks) and yields its raw
batches in order, computed by one pool of worker processes that lives for the whole run. Every batch
is still a pure function of (seed, step) or (split, index): workers only compute them early, so resume
and the pipeline's exactness do not depend on `workers`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

from torch.utils.data import DataLoader, Dataset

from sedona_runtime.data.base import ImageDataset
from sedona_runtime.data.preprocess import RawBatch
from sedona_runtime.data.stream import BatchStream, eval_batch_count, eval_raw_batch
from sedona_runtime.utils.errors import SedonaError

MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class Task:
    """One batch of a run: training step `step` (split "train"), or batch `index` of `count` of an
    evaluation of `split` ("val" | "test") that follows training step `step`."""

    split: str
    step: int
    index: int = 0
    count: int = 1


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
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cores // 2))


def eval_tasks(split: str, step: int, dataset: ImageDataset | None, batch_size: int) -> list[Task]:
    """The tasks of one evaluation round of `dataset` after training step `step` (none for an empty split)."""
    if dataset is None or len(dataset) == 0:
        return []
    count = eval_batch_count(dataset, batch_size)
    return [Task(split, step, i, count) for i in range(count)]


class _Tasks(Dataset):
    """Item i is the raw batch of tasks[i] (a DataLoader item is a whole batch)."""

    def __init__(self, tasks: Sequence[Task], stream: BatchStream | None, splits: dict[str, ImageDataset],
                 eval_batch_size: int) -> None:
        self.tasks, self.stream, self.splits, self.eval_batch_size = list(tasks), stream, splits, eval_batch_size

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> RawBatch:
        t = self.tasks[i]
        if t.split == "train":
            return self.stream.raw(t.step)
        return eval_raw_batch(self.splits[t.split], self.eval_batch_size, t.index)


def read_ahead(tasks: Sequence[Task], *, stream: BatchStream | None = None,
               splits: dict[str, ImageDataset] | None = None, eval_batch_size: int = 256,
               workers: int = 0) -> Iterator[RawBatch]:
    """The raw batches of `tasks`, in order; with `workers` > 0 computed ahead by that many processes
    (started now, in the background, and kept for the whole sequence)."""
    items = _Tasks(tasks, stream, splits or {}, eval_batch_size)
    if workers <= 0 or len(items) == 0:
        return (items[i] for i in range(len(items)))
    # spawn: the pipeline's coordinator runs RPC threads, and forking a process with threads can deadlock.
    return _one_line_errors(iter(DataLoader(items, batch_size=None, shuffle=False, num_workers=workers,
                                            prefetch_factor=2, multiprocessing_context="spawn",
                                            persistent_workers=False)))


def _one_line_errors(batches: Iterator[RawBatch]) -> Iterator[RawBatch]:
    """`batches`, with a SedonaError raised in a DataLoader worker as its own one line (naming the file).

    torch re-raises a worker's exception as the same type whose message is the worker's whole traceback
    ("Caught SedonaError in DataLoader worker process 0. Original Traceback ...", 40 lines).
    """
    try:
        yield from batches
    except SedonaError as exc:
        raise worker_error(exc) from None


def worker_error(exc: SedonaError) -> SedonaError:
    """The worker's own message of a SedonaError re-raised by a DataLoader (its traceback's last line)."""
    text = str(exc)
    if "DataLoader worker" not in text or "Traceback" not in text:
        return exc
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1]
    for name in (type(exc).__qualname__, "SedonaError"):  # "module.Class: message"
        marker = f"{name}: "
        if marker in last:
            last = last.split(marker, 1)[1]
            break
    try:
        return type(exc)(last)
    except TypeError:  # a subclass with another constructor
        return SedonaError(last)


def train_batches(stream: BatchStream, start: int, end: int, workers: int = 0) -> Iterator[RawBatch]:
    """The raw batches of steps start..end-1, in order."""
    return read_ahead([Task("train", s) for s in range(start, end)], stream=stream, workers=workers)


def eval_batches_raw(dataset: ImageDataset, batch_size: int, workers: int = 0) -> Iterator[RawBatch]:
    """Every sample of `dataset` once, in index order, as stored."""
    return read_ahead(eval_tasks("eval", 0, dataset, batch_size), splits={"eval": dataset},
                      eval_batch_size=batch_size, workers=workers)
