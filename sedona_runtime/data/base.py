"""Image data sets as uint8 tensors with per-data-set normalization, batched gathers and seeded splits."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from sedona_runtime.utils.seed import make_generator

Stats = tuple[float, ...]


class ImageDataset(Dataset):
    """Yields (uint8 tensor C,H,W, int label); knows its normalization (mean/std on the [0,1] scale).

    Subclasses implement `__len__`, `__getitem__` and may override `get_batch` with a vectorized gather.
    """

    mean: Stats
    std: Stats
    num_classes: int

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 N,C,H,W, int64 N) for the given sample indices."""
        items = [self[int(i)] for i in indices]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)

    @property
    def labels(self) -> torch.Tensor:
        """int64 labels of every sample (used for stratified splits)."""
        return torch.tensor([self[i][1] for i in range(len(self))], dtype=torch.int64)


class TensorImageDataset(ImageDataset):
    """An in-memory data set: `images` uint8 (N,C,H,W) and `targets` int64 (N)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, mean: Stats, std: Stats, num_classes: int) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise ValueError(f"targets must have shape ({images.shape[0]},), got {tuple(targets.shape)}")
        self.images = images.contiguous()
        self.targets = targets.to(torch.int64)
        self.mean, self.std, self.num_classes = tuple(mean), tuple(std), num_classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images.index_select(0, indices), self.targets.index_select(0, indices)

    @property
    def labels(self) -> torch.Tensor:
        return self.targets


class SubsetImageDataset(ImageDataset):
    """The samples `indices` of `parent` (a view: no copy), keeping its normalization and gathers."""

    def __init__(self, parent: ImageDataset, indices: torch.Tensor) -> None:
        self.parent = parent
        self.indices = indices.to(torch.int64)
        self.mean, self.std, self.num_classes = parent.mean, parent.std, parent.num_classes
        self.seeded_by_step = getattr(parent, "seeded_by_step", False)  # see data.stream._get_batch

    def __len__(self) -> int:
        return self.indices.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.parent[int(self.indices[index])]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.parent.get_batch(self.indices.index_select(0, indices))

    @property
    def labels(self) -> torch.Tensor:
        return self.parent.labels.index_select(0, self.indices)


def stratified_split(labels: torch.Tensor, fraction: float, *seed_parts: int | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) index tensors: `fraction` of every class held out, chosen by a seeded permutation.

    Per class, round(fraction * n_c) samples are held out (at least one when fraction > 0 and the
    class has two or more), so class balance is kept. Both index lists are sorted, so the result
    depends only on `labels`, `fraction` and `seed_parts`.
    """
    gen = make_generator("stratified_split", *seed_parts)
    kept, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_held = int(round(fraction * idx.numel()))
        if fraction > 0 and n_held == 0 and idx.numel() > 1:
            n_held = 1
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def split_dataset(ds: ImageDataset, fraction: float, *seed_parts: int | str) -> tuple[ImageDataset, ImageDataset | None]:
    """(rest, held_out) subsets of `ds`; held_out is None when fraction is 0."""
    if fraction <= 0:
        return ds, None
    kept, held = stratified_split(ds.labels, fraction, *seed_parts)
    return SubsetImageDataset(ds, kept), SubsetImageDataset(ds, held)


def channel_stats(images: torch.Tensor) -> tuple[Stats, Stats]:
    """Per-channel mean and std on the [0,1] scale of uint8 (N,C,H,W) images (float64 accumulation)."""
    x = images.to(torch.float64).div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    std = x.std(dim=1).clamp_min(1e-3)  # a constant channel must not divide by zero
    return tuple(x.mean(dim=1).tolist()), tuple(std.tolist())

