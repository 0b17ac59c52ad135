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
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, raw: RawBatch, device: torch.device | str = "cpu") -> torch.Tensor:
        device = torch.device(device)
        x = _to_device(raw.x, device)
        x = x.to(torch.float32, copy=True) if x.is_floating_point() else x.to(torch.float32).div_(255.0)
        if raw.draws is not None and self.augment is not None:
            x = self.augment.apply(x, {k: _to_device(v, x.device) for k, v in raw.draws.items()})
        mean, std = self._on(x.device, x.dtype)
        return x.sub_(mean).div_(std)

    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as (1, C, 1, 1) tensors on `device`, copied there once: a plain H2D copy of a fresh
        host tensor waits for the device (it synchronises the stream), and this ran every step."""
        key = (device, dtype)
        if key not in self._constants:
            c = len(self.mean)
            self._constants[key] = (torch.tensor(self.mean, dtype=dtype).view(1, c, 1, 1).to(device),
                                    torch.tensor(self.std, dtype=dtype).view(1, c, 1, 1).to(device))
        return self._constants[key]

    def __getstate__(self) -> dict:  # pickled to the pipeline's block 1: the device copies stay behind
        return {**self.__dict__, "_constants": {}}

    def __repr__(self) -> str:
        return f"Preprocess(mean={self.mean}, std={self.std}, augment={self.augment!r})"


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; a host tensor bound for a GPU goes from pinned memory with non_blocking=True (a
    pageable source makes the copy wait for the device). On CPU, or already there: `t` itself."""
    if t.device == device or device.type != "cuda":
        return t.to(device)
    if t.device.type == "cpu" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)
