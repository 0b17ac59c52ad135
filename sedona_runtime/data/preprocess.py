"""From a batch as stored to the network's input: scaling, augmentation with its draws, normalization."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sedona_runtime.data.augment import Augment, Draws


@dataclass
class RawBatch:
    """A batch as the data loader gives it: images as stored (uint8 (N,C,H,W), or float for a user's data
    set), int64 labels (N,), and the random draws of its augmentation (None: not augmented).

    uint8 is a quarter of the bytes of float32: this is what leaves the pipeline's coordinator.
    """

    x: torch.Tensor
    y: torch.Tensor
    draws: Draws | None = None


class Preprocess:
    """Turns a RawBatch into the network's float input on any device: [0,1] scaling (uint8 / 255; float
    images as they are), the augmentation applied with the batch's own draws, normalization with the
    data set's per-channel mean and std.

    The single-process trainer applies it on its device, the pipeline's block 1 on its own: the same
    function of the same raw batch and draws, so both compute the same input (bitwise on CPU).
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], augment: Augment | None = None) -> None:
        self.mean, self.std, self.augment = tuple(mean), tuple(std), augment

    def __call__(self, raw: RawBatch, device: torch.device | str = "cpu") -> torch.Tensor:
        x = raw.x.to(device, non_blocking=True)
        x = x.to(torch.float32, copy=True) if x.is_floating_point() else x.to(torch.float32).div_(255.0)
        if raw.draws is not None and self.augment is not None:
            x = self.augment.apply(x, raw.draws)
        c = x.shape[1]
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, c, 1, 1).to(x.device)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, c, 1, 1).to(x.device)
        return x.sub_(mean).div_(std)

    def __repr__(self) -> str:
        return f"Preprocess(mean={self.mean}, std={self.std}, augment={self.augment!r})"
