"""K blocks x R replicas: which rank runs which (block, replica), the shard rule, the replicas' all-reduce.

A run of K blocks with R replicas has K*R block processes plus the coordinator (rank 0). Replica r of
block k trains on shard r of every batch: the coordinator splits each training batch into R equal,
contiguous shards (samples r*B/R .. (r+1)*B/R - 1, with their augmentation draws) and sends shard r to
replica r of block 1; replica r of block k feeds replica r of block k+1 (a "replica row"). After each
local backward the R replicas of a block average the gradients of the block and its head with c10d
all-reduce buckets over a gloo process group of those R ranks only (`grad_sync.GradSync`), then step:
their weights and optimizer states stay identical at every step.

BatchNorm normalizes with each shard's own statistics (as DistributedDataParallel does). Its running
statistics are replica 0's (shard 0's), as DDP's `broadcast_buffers` makes them: replica 0 is the one
that evaluates (the coordinator sends evaluation batches, whole, down replica row 0 only) and writes
checkpoints and best-weights candidates; the other replicas' running statistics are never read.

Ranks (`Layout.rank_of`): `rows` puts a replica row on consecutive ranks (rank = 1 + r*K + (k-1): a
machine holding consecutive ranks keeps a row's activations local, the all-reduces cross machines);
`blocks` puts a block's replicas on consecutive ranks (rank = 1 + (k-1)*R + r: the all-reduces stay
local, activations cross). With R = 1 both are rank = k, today's runtime.
"""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sedona_runtime.pipeline.messages import Batch
from sedona_runtime.pipeline.protocol import block_name
from sedona_runtime.utils.errors import SedonaError

PLACEMENTS = ("rows", "blocks")


@dataclass(frozen=True)
class Layout:
    """K blocks x R replicas over ranks 1..K*R (rank 0: the coordinator)."""

    blocks: int
    replicas: int = 1
    placement: str = "rows"

    @property
    def processes(self) -> int:
        """Block processes: K*R."""
        return self.blocks * self.replicas

    @property
    def world_size(self) -> int:
        return self.processes + 1

    def rank_of(self, block: int, replica: int) -> int:
        """Rank of replica `replica` (0-based) of block `block` (1-based)."""
        k, r = self.blocks, self.replicas
        if self.placement == "blocks":
            return 1 + (block - 1) * r + replica
        return 1 + replica * k + (block - 1)

    def block_of(self, rank: int) -> tuple[int, int]:
        """(block 1-based, replica 0-based) of block process `rank` (1..K*R)."""
        k, r = self.blocks, self.replicas
        if self.placement == "blocks":
            return 1 + (rank - 1) // r, (rank - 1) % r
        return 1 + (rank - 1) % k, (rank - 1) // k

    def name(self, rank: int) -> str:
        """RPC name of `rank`: block{k} for replica 0 (today's names), block{k}_r{r} for the others."""
        if rank == 0:
            from sedona_runtime.pipeline.protocol import COORDINATOR

            return COORDINATOR
        k, r = self.block_of(rank)
        return block_name(k) if r == 0 else f"{block_name(k)}_r{r}"

    def label(self, rank: int) -> str:
        """How messages name `rank`: 'block2' (R = 1) or 'block2 replica 1'."""
        k, r = self.block_of(rank)
        return block_name(k) if self.replicas == 1 else f"{block_name(k)} replica {r}"

    def prev_rank(self, rank: int) -> int:
        """Who feeds `rank`: the coordinator for block 1, else the same replica of the block before."""
        k, r = self.block_of(rank)
        return 0 if k == 1 else self.rank_of(k - 1, r)

    def next_ranks(self, rank: int) -> list[int]:
        """Whom `rank` feeds: every replica of block 1 (the coordinator), the same replica of the next block,
        or nobody (the last block)."""
        if rank == 0:
            return [self.rank_of(1, r) for r in range(self.replicas)]
        k, r = self.block_of(rank)
        return [] if k == self.blocks else [self.rank_of(k + 1, r)]

    def edges(self) -> list[tuple[int, int]]:
        """Every block-to-block activation edge (sender rank, receiver rank)."""
        return [(a, b) for a in range(1, self.world_size) for b in self.next_ranks(a)]

    def group(self, block: int) -> list[int]:
        """The ranks of block `block`'s replicas, in replica order."""
        return [self.rank_of(block, r) for r in range(self.replicas)]


def layout_of(pcfg) -> Layout:
    """The Layout of a PipelineConfig."""
    return Layout(pcfg.blocks, pcfg.replicas, pcfg.replica_placement)


def check_shards(batch_size: int, replicas: int, what: str = "--batch-size") -> None:
    """SedonaError unless a batch of `batch_size` splits into `replicas` equal shards."""
    if replicas > 1 and batch_size % replicas:
        raise SedonaError(f"{what} {batch_size} does not split into --replicas {replicas} equal shards: "
                          f"use a batch size that is a multiple of {replicas}")


def shard_batch(batch: Batch, replicas: int) -> list[Batch]:
    """Batch -> `replicas` Batches of the contiguous shards (x, y and each draw split along dim 0).

    With one replica the batch itself (no copy: R = 1 is today's runtime bit for bit).
    """
    if replicas == 1:
        return [batch]
    n = int(batch.y.shape[0]) // replicas

    def part(t: torch.Tensor, r: int) -> torch.Tensor:
        return t[r * n:(r + 1) * n].clone()  # its own storage: a shard leaves alone, not the whole batch

    draws = batch.draws
    return [dataclasses.replace(batch, x=part(batch.x, r), y=part(batch.y, r),
                                draws=None if draws is None else {k: part(v, r) for k, v in draws.items()})
            for r in range(replicas)]


def replica_group(store: dist.Store, layout: Layout, block: int, replica: int, timeout: float):
    """The gloo process group of block `block`'s R replicas only (this process is `replica` in it).

    Its own prefix of the run's store, so it is independent of the p2p transport's world group (the rpc
    transport has none). Creating it waits for all R replicas (bounded by `timeout`).
    """
    prefix = dist.PrefixStore(f"sedona/replicas/block{block}", store)
    return dist.ProcessGroupGloo(prefix, replica, layout.replicas, datetime.timedelta(seconds=timeout))
