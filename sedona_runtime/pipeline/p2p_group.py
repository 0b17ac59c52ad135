"""The c10d process group the p2p transport sends on: gloo for all ranks, NCCL pairs between GPUs."""
from __future__ import annotations

import datetime
import warnings

import torch.distributed as dist

from sedona_runtime.pipeline.affinity import same_gpu


def nccl_edges(placements: dict[int, dict], blocks: int,
               edges: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Block-to-block edges (i, i+1) (or the rank pairs `edges`, with replicas) whose ends are CUDA devices
    NCCL can pair: different GPUs or machines.

    Two processes on one GPU cannot share an NCCL communicator; such an edge (and any edge with a CPU
    end, the coordinator's included) uses gloo through pinned host memory.
    """
    out = []
    for i, j in edges if edges is not None else [(i, i + 1) for i in range(1, blocks)]:
        a, b = placements[i], placements[j]
        if a["device"].startswith("cuda") and b["device"].startswith("cuda"):
            if not same_gpu(a, b):
                out.append((i, j))
    return out


def join(store: dist.Store, rank: int, world_size: int, timeout: float,
         nccl: list[tuple[int, int]]) -> dict[tuple[int, int], object]:
    """Join the group (every rank of the run calls this, in the same order); the NCCL group of each edge
    this rank is an end of.

    Every group gets `timeout` (seconds): an NCCL group left at NCCL's default (10 minutes) would have its
    watchdog kill the process before a longer --timeout gives our readable error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dist.init_process_group("gloo", store=dist.PrefixStore("sedona/p2p", store), rank=rank,
                                world_size=world_size, timeout=datetime.timedelta(seconds=timeout))
        groups = {}
        limit = datetime.timedelta(seconds=timeout)
        for edge in nccl:  # collective: every rank creates every edge's group, members keep theirs
            group = dist.new_group(list(edge), backend="nccl", timeout=limit)
            if rank in edge:
                groups[edge] = group
    return groups


def leave(timeout: float = 30.0) -> None:
    """Destroy the group (after every transfer finished; a failed run exits without it).

    Every rank first waits for the others (a bounded barrier): a rank destroying its gloo context while a
    peer's last transfer still runs on it aborts that peer's process at exit ("terminate called without
    an active exception", seen under CPU contention). A rank that cannot finish the barrier in `timeout`
    seconds leaves anyway.
    """
    if not dist.is_initialized():
        return
    try:
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout))
    except RuntimeError:
        pass  # a peer left without it (its run failed): nothing is left to finish with it
    dist.destroy_process_group()
