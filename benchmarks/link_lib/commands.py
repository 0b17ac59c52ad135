"""The torchrun command of each "host" of the link benchmark: DDP over the two, the greedy pipeline across them."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from link_lib.netns import Pair

ROOT = Path(__file__).resolve().parents[2]
DDP_NODE = Path(__file__).with_name("ddp_node.py")


@dataclass(frozen=True)
class Job:
    """One measured layout across the two hosts: K blocks x R replicas (K = 1: DDP) and its placement."""

    blocks: int
    replicas: int = 1
    placement: str = "blocks"

    @property
    def name(self) -> str:
        if self.blocks == 1:
            return f"DDP x {self.replicas} (torch DDP)"
        reps = f" x {self.replicas} ({self.placement})" if self.replicas > 1 else ""
        return f"greedy K={self.blocks}{reps}"

    def procs(self) -> tuple[int, int]:
        """Processes on host a and host b. DDP: one each; greedy: the coordinator (rank 0) and the first half
        of the K R block ranks on host a, the rest on host b (so for K = 2, R = 1 the edge crosses)."""
        if self.blocks == 1:
            return (self.replicas // 2 + self.replicas % 2, self.replicas // 2)
        n = self.blocks * self.replicas
        return (1 + n // 2, n - n // 2)


def torchrun(pair: Pair, host: int, nproc: int, port: int) -> list[str]:
    """torchrun's options for host `host`: the static rendezvous on host a's address, no restarts.

    Not c10d: its agent decides whether it hosts the store from the machine's host name, which resolves
    outside the namespaces, so neither agent hosts it and both wait for the other.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", str(nproc),
            "--node-rank", str(host), "--master-addr", pair.addr[0], "--master-port", str(port),
            "--max-restarts", "0"]


def ddp_command(pair: Pair, host: int, job: Job, port: int, config: str, out: str) -> list[str]:
    return [*torchrun(pair, host, job.procs()[host], port), str(DDP_NODE), config, out]


def greedy_command(pair: Pair, host: int, job: Job, port: int, bench: dict, decoupling: str,
                   steps: int, run_dir: str) -> list[str]:
    """launch/greedy.py under torchrun, its RPC and gloo on this host's veth end (--iface)."""
    argv = [*torchrun(pair, host, job.procs()[host], port), str(ROOT / "launch" / "greedy.py"),
            "--blocks", str(job.blocks), "--decoupling", decoupling, "--arch", bench["arch"], "--retarget",
            "--width", f"{bench['width']:g}", "--dataset", "synthetic", "--image-size", str(bench["image_size"]),
            "--batch-size", str(bench["batch_size"]), "--steps", str(steps), "--no-augment",
            "--eval-interval", "0", "--checkpoint-interval", "0", "--seed", str(bench["seed"]),
            "--devices", "cpu", "--transport", "p2p", "--iface", pair.dev[host], "--plain", "--out", run_dir]
    if job.replicas > 1:
        argv[argv.index("--decoupling"):argv.index("--decoupling")] = [
            "--replicas", str(job.replicas), "--replica-placement", job.placement]
    return argv


def node_env(pair: Pair, host: int, base: dict[str, str]) -> dict[str, str]:
    """gloo and TensorPipe on the veth end; one torch thread (one core per host)."""
    return {**base, "GLOO_SOCKET_IFNAME": pair.dev[host], "TP_SOCKET_IFNAME": pair.dev[host],
            "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{base.get('PYTHONPATH', '')}".rstrip(":")}
