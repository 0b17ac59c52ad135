"""Every collective of the data-parallel search (the one module of search/ that uses torch.distributed).

`RankGroup` is the `Sharding` (search/sharding.py) of rank r of R processes: the rank computes shard r of
every batch, and the sums over shards that one process forms locally are formed here over the ranks:

- the inner gradients of the unrolled steps, with `AllReduceSum`, an autograd function over c10d whose
  backward is again an all-reduce sum. The forward gives every rank y = sum_s x_s (the whole batch's
  gradient, so every rank holds the same unrolled weights); the loss differentiated is the sum over ranks
  of each rank's part of the validation loss, so dL/dx_r = sum_s dL_s/dy_s: the sum of the ranks'
  incoming gradients. Each rank's hypergradient is then its part, summed by `sum_` into the whole's.
  One flat buffer per inner step: one collective, so every rank meets the same collectives in the same
  order in the backward pass too;
- the weight step's gradients and batch-norm buffers, d(alpha, beta), measured losses: `sum_`;
- the stop request (`any`) and the cross-rank checksum (`check_same`).

The group is gloo on CPU devices and NCCL on CUDA devices. A rank that dies makes the collectives of the
others fail (gloo: the peer's connection closes) or time out after `timeout` seconds.
"""
from __future__ import annotations

import datetime
from typing import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from sedona_runtime.search.sharding import Sharding
from sedona_runtime.utils.errors import SedonaError


class RanksDiverged(SedonaError):
    """The ranks' (alpha, beta), Adam state or weights differ: the data-parallel search cannot go on."""


class AllReduceSum(torch.autograd.Function):
    """y = sum over ranks of x (a new tensor); the backward sums the ranks' incoming gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = x.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        g = grad.detach().clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def connect(store, rank: int, world_size: int, device: torch.device, timeout: float) -> None:
    """Join the search's process group (gloo, or NCCL for a CUDA device) through `store`."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout))


def close() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in like]), like)]


class RankGroup(Sharding):
    """Rank `rank` of `shards` processes of one search (module docstring). Use after `connect`."""

    def __init__(self, shards: int, rank: int, device: torch.device) -> None:
        if not 0 <= rank < shards:
            raise ValueError(f"rank {rank} is not one of {shards}")
        super().__init__(shards, rank)
        self.device = device  # collectives' own tensors live here (NCCL needs them on the GPU)

    def reduce_grads(self, grads: Sequence[Tensor | None]) -> list[Tensor | None]:
        present = [g for g in grads if g is not None]  # the same positions on every rank (same network)
        if not present:
            return list(grads)
        summed = iter(_unflat(AllReduceSum.apply(_flat(present)), present))
        return [None if g is None else next(summed) for g in grads]

    def sum_(self, tensors: Sequence[Tensor]) -> None:
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        with torch.no_grad():
            for group in by_dtype.values():
                flat = _flat(group).to(self.device)
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
                for t, part in zip(group, _unflat(flat, group)):
                    t.copy_(part)

    def any(self, flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def check_same(self, named: dict[str, Tensor], step: int) -> None:
        """Two float64 sums per tensor (plain and position-weighted), gathered from every rank and compared
        bitwise: identical tensors give identical sums; a difference anywhere almost surely shows."""
        sums = []
        for t in named.values():
            v = t.detach().reshape(-1).double()
            sums += [v.sum(), (v * torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)).sum()]
        mine = torch.stack(sums).to(self.device)
        every = [torch.empty_like(mine) for _ in range(self.shards)]
        dist.all_gather(every, mine)
        names = list(named)
        for r, theirs in enumerate(every):
            differ = (theirs != every[0]).nonzero().flatten().tolist()
            if differ:
                raise RanksDiverged(f"the ranks of the search no longer agree at step {step}: rank {r}'s "
                                    f"{names[differ[0] // 2]} differs from rank 0's (a nondeterministic device "
                                    "or a mixed set of devices); resume from the last checkpoint, on one kind "
                                    "of device")
