"""Rows that run `launch/greedy.py --blocks K --replicas R` (plain DDP is K = 1), once the runtime has --replicas.

The runtime's replica groups come from another branch of this wave: the rows light up by themselves when
`launch/greedy.py --help` lists --replicas. Their step time is a difference of two runs (warm-up steps
only, then warm-up + timed steps), which cancels process start-up without reading the runtime's output.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from speedup_lib.measure import BenchConfig

LAUNCHER = Path(__file__).resolve().parents[2] / "launch" / "greedy.py"


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


def replicas_available(launcher: Path = LAUNCHER, timeout: float = 60.0) -> bool:
    """True when the runtime's launcher offers --replicas (the replica groups are merged)."""
    try:
        proc = subprocess.run([sys.executable, str(launcher), "--help"], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "--replicas" in proc.stdout


def replica_rows(devices: int, blocks: int, planned: str, transport: str) -> list[ReplicaRow]:
    """--blocks 1 --replicas G, and greedy K x R with K * R = G for the benchmark's K (when R >= 2)."""
    rows = [ReplicaRow(1, devices, "backprop", transport)]
    if blocks < devices and devices % blocks == 0:
        rows.append(ReplicaRow(blocks, devices // blocks, planned, transport))
    return rows


def command(bc: BenchConfig, row: ReplicaRow, steps: int, out_dir: str, launcher: Path = LAUNCHER) -> list[str]:
    """The launcher's argv for `steps` steps of the benchmark's network and synthetic data on CPU core sets."""
    return [sys.executable, str(launcher), "--blocks", str(row.blocks), "--replicas", str(row.replicas),
            "--decoupling", row.decoupling, "--arch", bc.arch, "--retarget", "--width", f"{bc.width:g}",
            "--dataset", "synthetic", "--image-size", str(bc.image_size), "--batch-size", str(bc.batch_size),
            "--steps", str(steps), "--no-augment", "--eval-interval", "0", "--checkpoint-interval", "0",
            "--seed", str(bc.seed), "--devices", "cpu", "--transport", row.transport, "--plain",
            "--out", out_dir]


def time_replicas(bc: BenchConfig, row: ReplicaRow, timeout: float = 900.0) -> dict:
    """Seconds per step: (wall of warm-up + steps) - (wall of warm-up alone), over `steps`."""
    from sedona_runtime.utils.errors import SedonaError

    walls = []
    for steps in (bc.warmup, bc.warmup + bc.steps):
        with tempfile.TemporaryDirectory() as tmp:
            argv = command(bc, row, steps, str(Path(tmp) / "run"))
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise SedonaError(f"{row.name} did not finish within {timeout:.0f}s") from None
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                raise SedonaError(f"{row.name} failed (exit {proc.returncode}):\n{tail}")
    return {"step_s": max(1e-9, walls[1] - walls[0]) / bc.steps, "walls_s": walls, "peak_memory_bytes": None}
