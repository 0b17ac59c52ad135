"""Sharded batches for the search: every batch split into R shards, batch norm per shard, gradients averaged.

One definition serves both ways of running a search with `shards = R`:

- one process (`--shards R`): this process computes every shard in turn (the reference);
- R processes (`--devices a,b,...` or torchrun): rank r computes shard r, and the collectives of
  `search/distributed.py` (`RankGroup`, a subclass of `Sharding`) sum what the ranks computed.

What a sharded step computes. A batch of n rows is cut into R contiguous shards (`torch.tensor_split`:
sizes differ by at most one), shard r of n_r rows weighted w_r = n_r / n. Each shard runs its own forward
(batch norm normalises with that shard's statistics, as on R devices), and the loss of the step is
sum_r w_r L_r, so its gradient is the w-weighted average of the shards' gradients (for equal shards the
plain average). Batch norm's running buffers start every shard from the same values and end as the
w-weighted average of the R updated copies (an average of exponential averages from one start is the
exponential average of the averaged batch statistics); integer buffers (num_batches_tracked) advance once.
A search with `shards = 1` runs exactly the unsharded code path (bit-identical to earlier versions).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def split(batch: Batch, shards: int) -> list[tuple[float, Batch]]:
    """(w_r, shard r) for r < `shards`: contiguous row blocks of `batch`, w_r = rows_r / rows.

    Raises ValueError when the batch has fewer rows than shards (a shard would be empty; the config's
    validation refuses such settings first).
    """
    x, y = batch
    n = int(y.shape[0])
    if n < shards:
        raise ValueError(f"a batch of {n} rows cannot be cut into {shards} non-empty shards")
    return [(int(yr.shape[0]) / n, (xr, yr)) for xr, yr in zip(torch.tensor_split(x, shards),
                                                                 torch.tensor_split(y, shards))]


class Sharding:
    """How this process takes part in a sharded search; this base class: all `shards` in this process.

    `rank` None: this process computes every shard; an integer: only that shard (R processes, where the
    subclass `distributed.RankGroup` supplies the collectives). In one process every collective is the
    identity, because the sums over shards happen locally.
    """

    def __init__(self, shards: int = 1, rank: int | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.shards, self.rank = int(shards), rank

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0, or the only process)."""
        return self.rank in (None, 0)

    @property
    def unsharded(self) -> bool:
        return self.shards == 1 and self.rank is None

    def local(self, batch: Batch) -> list[tuple[float, Batch]]:
        """The (weight, shard) pairs this process computes."""
        parts = split(batch, self.shards)
        return parts if self.rank is None else [parts[self.rank]]

    # -- collectives (identities in one process; see distributed.RankGroup) ---------------------------
    def reduce_grads(self, grads: Sequence[Tensor | None]) -> list[Tensor | None]:
        """Differentiable sum over processes of each inner gradient (higher's `grad_callback`)."""
        return list(grads)

    def sum_(self, tensors: Sequence[Tensor]) -> None:
        """In-place sum over processes (no autograd): gradients, buffers, measured values."""

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any (a stop request seen by one rank)."""
        return flag

    def check_same(self, named: dict[str, Tensor], step: int) -> None:
        """SedonaError on every process unless `named` is bitwise the same on all of them."""

    # -- sharded computations -------------------------------------------------------------------------
    def values(self, *values: float) -> list[float]:
        """Sums over processes of per-process partial sums (measured losses and errors; float64)."""
        if self.rank is None:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        self.sum_([t])
        return t.tolist()

    def relaxed_loss(self, net: nn.Module, batch: Batch, a_mix: Tensor, b_mix: Tensor) -> tuple[Tensor, list]:
        """(sum_r w_r L_r over this process's shards, the passes' GradMix hooks) of the relaxed loss, every
        shard's graph alive (the stored unrolled graph). Each shard's forward moves `net`'s batch-norm running
        buffers in turn: the unrolled steps discard them (Bilevel reloads the sampled weights), and batch norm
        in training mode reads no running statistics.
        """
        if self.unsharded:
            out = net(batch[0], batch[1], a_mix, b_mix)
            return out.total, [out.mix]
        total, mixes = None, []
        for w, (x, y) in self.local(batch):
            out = net(x, y, a_mix, b_mix)
            total = out.total * w if total is None else total + out.total * w
            mixes.append(out.mix)
        return total, mixes

    def relaxed_backward(self, net: nn.Module, batch: Batch, a_mix: Tensor, b_mix: Tensor) -> Tensor:
        """Back-propagate sum_r w_r L_r over this process's shards into the parameters' `.grad` (accumulated),
        one shard at a time (one shard's graph alive); returns the loss, detached. Leaves `net`'s buffers as
        the sharded step defines them (module docstring; summed over processes).
        """
        if self.unsharded:
            out = net(batch[0], batch[1], a_mix, b_mix)
            out.total.backward()
            return out.total.detach()
        start = _buffers(net)
        total, ends = None, []
        for w, (x, y) in self.local(batch):
            _set_buffers(net, {k: v.clone() for k, v in start.items()})
            out = net(x, y, a_mix, b_mix)
            part = out.total * w
            part.backward()
            total = part.detach() if total is None else total + part.detach()
            ends.append((w, _buffers(net)))
            del out, part
        self._average_buffers(net, ends)
        return total

    def val_loss(self, fnet: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
        """(sum_r w_r loss_r, sum_r w_r error_r) over this process's shards of the validation batch."""
        if self.unsharded:
            return fnet.val_loss(*batch)
        loss = err = None
        for w, (x, y) in self.local(batch):
            l_r, e_r = fnet.val_loss(x, y)
            loss = l_r * w if loss is None else loss + l_r * w
            err = e_r * w if err is None else err + e_r * w
        return loss, err

    def eval_shards(self, batch: Batch) -> list[tuple[int, Batch]]:
        """(r, shard r) of an evaluation batch for this process's shards; empty shards (a short last batch)
        are left out. Evaluation is per row (eval mode), so shards only divide the work."""
        if self.unsharded:
            return [(0, batch)]
        parts = list(enumerate(zip(torch.tensor_split(batch[0], self.shards), torch.tensor_split(batch[1], self.shards))))
        return [(r, b) for r, b in parts if (self.rank is None or r == self.rank) and b[1].numel()]

    def sum_param_grads(self, net: nn.Module) -> None:
        """Sum `.grad` over processes (after a first-order backward; one collective)."""
        if self.rank is not None:
            self.sum_([p.grad for p in net.parameters() if p.grad is not None])

    def _average_buffers(self, net: nn.Module, ends: list[tuple[float, dict[str, Tensor]]]) -> None:
        merged = {}
        for name, last in ends[-1][1].items():
            if last.is_floating_point():
                merged[name] = sum(w * b[name] for w, b in ends)  # w_r-weighted; summed over ranks below
            else:
                merged[name] = last  # num_batches_tracked: +1 from the same start on every shard
        _set_buffers(net, merged)
        self.sum_([b for b in merged.values() if b.is_floating_point()])


def _buffers(net: nn.Module) -> dict[str, Tensor]:
    return {f"{id(m)}.{k}": b for m in net.modules() for k, b in m._buffers.items() if b is not None}


def _set_buffers(net: nn.Module, values: dict[str, Tensor]) -> None:
    # New tensors rather than copy_(): autograd may hold the running buffers of the shards' forwards.
    for m in net.modules():
        for k, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[k] = values[f"{id(m)}.{k}"]


ONE = Sharding()  # the unsharded search
