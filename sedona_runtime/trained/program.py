"""The pt2 format: torch.export of a trained network with its input normalization inside, any batch size."""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from sedona_runtime.models.exported import ExportedNet
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_bytes


class NormalizedNet(nn.Module):
    """Raw images (N, C, H, W) as the run's data gave them (uint8, or float used as they are) -> logits
    (N, classes) in float32, or with `heads` a tuple: every auxiliary head's logits, then the classifier's.

    The input goes through the trainers' own preprocessing, op for op (data.preprocess.Preprocess without
    augmentation: float32, / 255 for uint8, minus mean, over std), then the run's dtype, then the network
    (training.evaluate.block_logits: its logits as float32); so its logits equal `evaluate`'s bit for bit
    on one CPU thread.
    """

    def __init__(self, net: ExportedNet, mean: list[float], std: list[float], scale: float | None,
                 dtype: torch.dtype, heads: bool = False) -> None:
        super().__init__()
        self.net, self.scale, self.dtype, self.heads = net, scale, dtype, heads
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, ...]:
        x = images.to(torch.float32)
        if self.scale is not None:
            x = x / self.scale
        x = ((x - self.mean) / self.std).to(self.dtype)
        if self.heads:
            return tuple(z.float() for z in self.net.head_logits(x))
        return self.net(x).float()


def export_program(net: NormalizedNet, example: Tensor, what: str) -> torch.export.ExportedProgram:
    """torch.export of `net` on `example` (N >= 2 images of the input's dtype and shape), the batch
    dimension dynamic (any N >= 1 at load time).

    Raises SedonaError, one line, naming `what` and the formats that need no tracing when torch.export
    cannot trace the network (data-dependent control flow, unsupported Python in forward, ...).
    """
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad():
            return torch.export.export(net.eval(), (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:  # noqa: BLE001  torch.export raises many kinds; every one means "cannot trace"
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise SedonaError(f"torch.export cannot trace {what} ({type(exc).__name__}: {reason[:300]}); "
                          "export it with --format state_dict (weights for your own code) or --format module "
                          "(a pickled nn.Module) instead") from None


def save_program(program: torch.export.ExportedProgram, out: str | os.PathLike) -> Path:
    """Write `program` atomically; load it with torch.export.load(out).module() (no sedona_runtime needed)."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return atomic_write_bytes(out, buffer.getvalue())
