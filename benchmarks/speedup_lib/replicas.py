"""Rows that run the runtime's `--blocks K --replicas R` (plain data-parallel backprop is K = 1).

Each is a pipeline run like the greedy rows (speedup_lib.measure.time_pipeline with BenchConfig.replicas),
timed over the same steady-state window of replica 0's step timeline.
"""
from __future__ import annotations

from dataclasses import dataclass

from speedup_lib.measure import BenchConfig


@dataclass(frozen=True)
class ReplicaRow:
    """K blocks x R replicas through the runtime; `decoupling` is the planned cut's file for K >= 2."""

    blocks: int
    replicas: int
    decoupling: str
    transport: str = "p2p"

    @property
    def name(self) -> str:
        if self.blocks == 1:
            return f"--blocks 1 --replicas {self.replicas} (runtime DDP)"
        return f"greedy {self.blocks} x {self.replicas} (planned cut, {self.transport})"


def replica_rows(devices: int, blocks: int, planned: str, transport: str) -> list[ReplicaRow]:
    """--blocks 1 --replicas G, and greedy K x R with K * R = G for the benchmark's K (when R >= 2)."""
    rows = [ReplicaRow(1, devices, "backprop", transport)]
    if blocks < devices and devices % blocks == 0:
        rows.append(ReplicaRow(blocks, devices // blocks, planned, transport))
    return rows


def time_replicas(bc: BenchConfig, row: ReplicaRow, timeout: float = 900.0) -> dict:
    """The row's run through the runtime (a fresh process, like every pipeline row), timed over the same
    steady-state window as the greedy rows (measure.steady_window on replica 0's step timeline): a
    difference of two whole runs' wall times carried their start-up noise (0.0 ms/step at 3 steps)."""
    import dataclasses

    from speedup_lib.measure import time_pipeline

    run = dataclasses.replace(bc, blocks=row.blocks, replicas=row.replicas, transport=row.transport)
    return time_pipeline(run, row.decoupling, timeout=timeout)
