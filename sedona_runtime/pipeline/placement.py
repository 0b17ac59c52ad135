"""Where each block process runs: one rule for self-launched and torchrun-launched runs."""
from __future__ import annotations

from dataclasses import dataclass

from sedona_runtime.pipeline.affinity import core_sets, normalize_device, resolve_device


@dataclass
class Placement:
    """Block `rank`'s process (rank = block index, 1-based): its device, CPU cores and torch threads."""

    rank: int
    device: str = "cpu"
    cores: list[int] | None = None
    threads: int = 0
    next_device: str | None = None   # the next block's device when it is on this machine (device maps)


def place_block(devices: str, explicit: list[str] | None, threads: int, rank: int, local_rank: int,
                local_size: int, next_rank: int | None = -1) -> Placement:
    """The placement of block `rank`, the only rule for both launch modes.

    The blocks on one machine take slots 0..n-1 in rank order. On the coordinator's machine (the one
    holding rank 0, i.e. rank - local_rank == 0) the coordinator is local rank 0, so a block's slot is
    local_rank - 1 of n = local_size - 1; on any other machine slot = local_rank of n = local_size.
    Device: this block's entry of an explicit --devices list, else cuda:(slot mod #GPUs) when CUDA
    exists and --devices is not cpu, else cpu. CPU cores: set `slot` of n disjoint sets of the cores
    this process may use (round-robin single cores when n exceeds them). The coordinator needs no
    placement: it uses no GPU and one CPU thread while the blocks train.
    `next_rank`: the rank this block feeds (None: none; -1: rank + 1, a run without replicas); with
    replicas (pipeline/replicas.py) ranks are block processes, an explicit list has one device per rank.
    """
    with_coordinator = rank - local_rank == 0
    slot = local_rank - 1 if with_coordinator else local_rank
    n = local_size - 1 if with_coordinator else local_size
    device = str(explicit[rank - 1]) if explicit is not None else str(resolve_device(devices, slot))
    nxt = None
    if next_rank == -1:
        next_rank = rank + 1
    # Ranks are contiguous per machine: the next block runs here when its rank is in this machine's range.
    if next_rank is not None and rank < next_rank < rank - local_rank + local_size:
        if explicit is None:
            nxt = str(resolve_device(devices, slot + next_rank - rank))
        elif next_rank <= len(explicit):
            nxt = str(explicit[next_rank - 1])
    return Placement(rank=rank, device=device, cores=core_sets(n)[slot], threads=threads, next_device=nxt)


def local_placements(devices: str, explicit: list[str] | None, threads: int, blocks: int,
                     layout=None) -> list[Placement]:
    """Block processes 1..K (K*R with a replicas.Layout) all on this machine next to the coordinator."""
    if layout is None or layout.replicas == 1:
        return [place_block(devices, explicit, threads, i, i, blocks + 1) for i in range(1, blocks + 1)]
    n = layout.processes
    return [place_block(devices, explicit, threads, i, i, n + 1, next(iter(layout.next_ranks(i)), None))
            for i in range(1, n + 1)]


def sharing_notes(placements: dict[int, dict], available: int | None = None) -> list[str]:
    """One line per shared resource: blocks on the same GPU, or more CPU blocks than cores on a machine."""
    notes = []
    by_gpu: dict[tuple[str, str], list[int]] = {}
    cpu_blocks: dict[str, list[int]] = {}
    cores: dict[str, set[int]] = {}
    for i, p in sorted(placements.items()):
        host = p.get("host", "")
        if p["device"].startswith("cuda"):
            by_gpu.setdefault((host, normalize_device(p["device"])), []).append(i)
        else:
            cpu_blocks.setdefault(host, []).append(i)
            cores.setdefault(host, set()).update(p.get("cores") or [])
    for (host, dev), blocks in by_gpu.items():
        if len(blocks) > 1:
            where = f" on {host}" if host else ""
            notes.append(f"blocks {', '.join(map(str, blocks))} share {dev}{where}: they run, but take turns on one GPU")
    for host, blocks in cpu_blocks.items():
        n = len(cores[host]) if cores[host] else (available or 0)
        if n and len(blocks) > n:
            where = f" on {host}" if host else ""
            notes.append(f"{len(blocks)} blocks share {n} CPU cores{where} round-robin: they run, but do not each "
                         "get a core of their own")
    return notes
