"""One process, R shards: the single-process reference of the pipeline's K blocks x R replicas.

Each training batch is split into R equal contiguous shards (the pipeline's shard rule,
pipeline/replicas.py); every block runs each shard's forward and local backward on its own, with
BatchNorm on that shard's statistics, averages the shards' gradients (each divided by R, then summed
in shard order: what the replicas' all-reduce computes) and steps once. BatchNorm's running
statistics are shard 0's (the pipeline's replica 0 keeps them, as DDP's broadcast_buffers does).

For R = 2 the average is bitwise the pipeline's on CPU: g/2 is exact in binary floating point and a
sum of two terms does not depend on their order, so the pipeline's gloo all-reduce gives the same
bits. For R > 2 gloo's ring may add the shards in another order: each gradient element then differs by
at most (R - 1) * eps * sum_r |g_r| / R (eps = 2**-52 in float64), which is the tolerance to use.
"""
from __future__ import annotations

import torch

from sedona_runtime.training.block import BlockRunner
from sedona_runtime.training.losses import local_loss
from sedona_runtime.utils.errors import SedonaError


def split_shards(x: torch.Tensor, y: torch.Tensor, shards: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(x shards, y shards): `shards` equal contiguous pieces along dim 0; SedonaError when it does not split."""
    n = int(y.shape[0])
    if n % shards:
        raise SedonaError(f"batch size {n} does not split into {shards} equal shards")
    m = n // shards
    return ([x[r * m:(r + 1) * m] for r in range(shards)], [y[r * m:(r + 1) * m] for r in range(shards)])


def sharded_step(runner: BlockRunner, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One training step of `runner`'s block on R shards; (each shard's output features, shard 0's loss).

    xs: R tensors (N/R, C, H, W) on any device (detached here), ys: R (N/R,) int64 labels. The optimizer
    and the schedule step once, on the average of the R shards' gradients. Raises NonFiniteLossError
    like BlockRunner.train_step.
    """
    block = runner.block
    block.train()
    R = len(xs)
    params = list(block.parameters())
    acc: list[torch.Tensor | None] | None = None
    outs, first_loss, kept = [], None, None
    for r, (x, y) in enumerate(zip(xs, ys)):
        x = x.detach()
        x = x.to(runner.device, dtype=runner.dtype) if x.is_floating_point() else x.to(runner.device)
        y = y.to(runner.device)
        with torch.autocast(runner.device.type, dtype=torch.float16, enabled=runner.amp):
            feats = block(x)
            loss, _ = local_loss(block.head, feats, y, runner.label_smoothing)
        runner._check_loss(loss)
        if r == 0:  # BatchNorm's running statistics after shard 0: what the pipeline's replica 0 keeps
            kept = [b.detach().clone() for b in block.buffers()]
            first_loss = loss.detach()
        runner.optimizer.zero_grad(set_to_none=True)
        runner.scaler.scale(loss).backward()
        grads = [None if p.grad is None else p.grad / R for p in params]  # each shard's share: g_r / R
        acc = grads if acc is None else [a if g is None else g if a is None else a + g for a, g in zip(acc, grads)]
        outs.append(feats.detach())
    for b, v in zip(block.buffers(), kept):
        b.copy_(v)
    for p, g in zip(params, acc):
        p.grad = g
    runner.scaler.step(runner.optimizer)
    runner.scaler.update()
    runner.scheduler.step()
    runner.step += 1
    runner.post_loss(first_loss)
    return outs, first_loss
