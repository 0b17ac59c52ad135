"""The peers the greedy pipeline is compared with, on G processes of one core set each (gloo, CPU).

ddp    torch.nn.parallel.DistributedDataParallel itself: the backprop baseline's network, optimizer and
       global batch, each rank training batch / G samples (BatchNorm on each shard, as DDP does).
gpipe  torch.distributed.pipelining ScheduleGPipe on the planned contiguous cut, M micro-batches.
1f1b   the same with Schedule1F1B.
Each runs from a fresh process (peer_child.py) that spawns the G workers; the figures come back as JSON.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from speedup_lib.measure import BenchConfig, train_config

KINDS = ("ddp", "gpipe", "1f1b")
# Whether each row's learning algorithm is end-to-end backprop (what a reader must know beside a speedup).
ALGORITHM = {
    "backprop": "backprop",
    "ddp": "backprop (BatchNorm per shard)",
    "replicas": "backprop (BatchNorm per shard)",
    "gpipe": "backprop (BatchNorm per micro-batch)",
    "1f1b": "backprop (BatchNorm per micro-batch)",
    "greedy": "greedy (local losses)",
}


@dataclasses.dataclass(frozen=True)
class Peer:
    """One peer row: its kind, micro-batches (pipelining) and G."""

    kind: str
    devices: int
    microbatches: int = 0

    @property
    def name(self) -> str:
        if self.kind == "ddp":
            return f"DDP x {self.devices} (torch DDP)"
        label = "GPipe" if self.kind == "gpipe" else "1F1B"
        return f"{label} {self.devices} stages, {self.microbatches} micro-batches"


def parse_peers(text: str, devices: int, microbatches: tuple[int, ...] = (4, 8)) -> list[Peer]:
    """--peers ddp,gpipe,1f1b -> the rows (each pipelining schedule at every micro-batch count)."""
    from sedona_runtime.utils.errors import SedonaError

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in KINDS]
    if bad:
        raise SedonaError(f"--peers: {', '.join(bad)}: use any of {', '.join(KINDS)} (comma separated), or none")
    peers = []
    for n in names:
        if n == "ddp":
            peers.append(Peer("ddp", devices))
        else:
            peers += [Peer(n, devices, m) for m in microbatches]
    return peers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_peer(bc: BenchConfig, peer: Peer, boundaries: list[int], timeout: float = 900.0) -> dict[str, Any]:
    """Run one peer in a fresh process; {step_s, peak_memory_bytes (per process), ...}."""
    from sedona_runtime.utils.errors import SedonaError

    with tempfile.TemporaryDirectory() as tmp:
        config, out = Path(tmp) / "bench.json", Path(tmp) / "result.json"
        config.write_text(json.dumps({"bench": dataclasses.asdict(bc), "peer": dataclasses.asdict(peer),
                                      "boundaries": boundaries}))
        child = Path(__file__).with_name("peer_child.py")
        try:
            proc = subprocess.run([sys.executable, str(child), str(config), str(out)], capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SedonaError(f"{peer.name} did not finish within {timeout:.0f}s") from None
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise SedonaError(f"{peer.name} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


# ---- inside the worker processes --------------------------------------------------------------------------
def worker(rank: int, spec: dict, port: int, cores: list[list[int]], out_dir: str) -> None:
    """One of the G ranks: pin, join gloo, train warmup + steps, write its figures (rank 0 the timings)."""
    import torch
    import torch.distributed as dist

    bc = BenchConfig(**spec["bench"])
    peer = Peer(**spec["peer"])
    os.sched_setaffinity(0, set(cores[rank]))
    torch.set_num_threads(len(cores[rank]))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=peer.devices)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stamps = (train_ddp if peer.kind == "ddp" else train_pipelined)(bc, peer, spec["boundaries"], rank, tmp)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        record = {"rank": rank, "peak_memory_bytes": peak, "stamps": stamps}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def _parts(bc: BenchConfig, tmp: str):
    from sedona_runtime.training.greedy import build_parts, make_stream

    parts = build_parts(train_config(bc, "backprop", tmp))
    (block,) = parts.blocks
    stream = make_stream(parts)
    batches = [stream.batch(s) for s in range(bc.warmup + bc.steps)]  # made before timing, as the baseline
    return parts, block, batches


def train_ddp(bc: BenchConfig, peer: Peer, boundaries: list[int], rank: int, tmp: str) -> list[float]:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from sedona_runtime.training.block import build_optimizer
    from sedona_runtime.training.losses import local_loss

    parts, block, batches = _parts(bc, tmp)

    class WithLoss(torch.nn.Module):  # DDP's forward must reach every parameter: the block and its classifier
        def __init__(self) -> None:
            super().__init__()
            self.block = block

        def forward(self, x, y):
            return local_loss(self.block.head, self.block(x), y, 0.0)[0]

    model = DistributedDataParallel(WithLoss())
    opt = build_optimizer(model.parameters(), parts.cfg)
    G, shard = peer.devices, bc.batch_size // peer.devices
    stamps = []
    for x, y in batches:
        xs, ys = x[rank * shard:(rank + 1) * shard].float(), y[rank * shard:(rank + 1) * shard]
        opt.zero_grad(set_to_none=True)
        model(xs, ys).backward()
        opt.step()
        stamps.append(time.perf_counter())
    return stamps


def train_pipelined(bc: BenchConfig, peer: Peer, boundaries: list[int], rank: int, tmp: str) -> list[float]:
    import torch
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    from sedona_runtime.training.block import build_optimizer

    parts, block, batches = _parts(bc, tmp)
    cuts = [0, *boundaries, len(block.layers)]
    layers = list(block.layers)[cuts[rank]:cuts[rank + 1]]
    last = rank == peer.devices - 1
    module = torch.nn.Sequential(*layers, *([block.head] if last else []))  # the classifier gives the logits
    stage = PipelineStage(module, rank, peer.devices, torch.device("cpu"))
    schedule = (ScheduleGPipe if peer.kind == "gpipe" else Schedule1F1B)(
        stage, peer.microbatches, loss_fn=torch.nn.functional.cross_entropy)
    opt = build_optimizer(module.parameters(), parts.cfg)
    stamps = []
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        if rank == 0:
            schedule.step(x.float())
        elif last:
            schedule.step(target=y, losses=[])
        else:
            schedule.step()
        opt.step()
        stamps.append(time.perf_counter())
    return stamps


def figures(bc: BenchConfig, records: list[dict]) -> dict[str, Any]:
    """Step time of a peer run: the slowest rank's window from its last warm-up step to its last step."""
    windows = [(r["stamps"][-1] - r["stamps"][bc.warmup - 1]) / bc.steps for r in records]
    return {"step_s": max(windows), "peak_memory_bytes": max(r["peak_memory_bytes"] for r in records),
            "peak_memory_per_rank": [r["peak_memory_bytes"] for r in sorted(records, key=lambda r: r["rank"])]}
