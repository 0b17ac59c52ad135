"""PipelineConfig: a training run plus how it is spread over processes and connected."""
from __future__ import annotations

from dataclasses import dataclass, field

from sedona_runtime.training.config import TrainConfig
from sedona_runtime.utils.errors import SedonaError


START_TIMEOUT_S = 120.0  # at least this long for the processes to start, join and build their blocks


@dataclass
class PipelineConfig:
    """The pipeline trains exactly `train` (same seed, data order and steps as the single-process trainer)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    blocks: int = 4                 # K: one process per block (must equal the decoupling's K)
    replicas: int = 1               # R: processes per block, each on its shard of every batch (replicas.py)
    replica_placement: str = "rows"  # rows | blocks: which block processes get consecutive ranks (replicas.py)
    queue_depth: int = 2            # items a block's input queue accepts before the sender waits
    window: int = 2                 # puts a sender may have in flight, unacknowledged
    devices: str = "auto"           # auto | cpu | cuda | comma list with one device per block
    threads: int = 0                # torch threads per block (0: one per core of its core set)
    timeout: float = 300.0          # bound on every single wait (a step, a put, a checkpoint)
    heartbeat: float = 0.5          # liveness ping interval; a silent peer fails the run
    heartbeat_timeout: float = 15.0  # a peer that cannot answer a ping this long is lost (a dead one fails at once)
    resume: bool = False
    port: int = 0                   # loopback port for the self-launched group (0: a free one)
    timeline: bool = False          # blocks record (step, start, end) wall-clock spans of every step (benchmarks)
    transport: str = "rpc"          # activations between processes: "rpc" (RPC queues) | "p2p" (c10d send/recv)
    device_maps: bool = False       # rpc: CUDA activations go GPU to GPU through TensorPipe device maps
                                    # (else through pinned host memory)
    iface: str | None = None        # network interface a multi-machine run listens on (one machine: loopback)

    @property
    def start_timeout(self) -> float:
        """Bound on starting up (processes joining, building their block, loading a checkpoint): process
        start-up is not a training step, so a short --timeout must not fail it."""
        return max(self.timeout, START_TIMEOUT_S)

    def validate(self) -> None:
        checks = [
            (self.blocks >= 1, f"--blocks must be >= 1, got {self.blocks}"),
            (self.replicas >= 1, f"--replicas must be >= 1, got {self.replicas}"),
            (self.replica_placement in ("rows", "blocks"),
             f"--replica-placement must be rows or blocks, got {self.replica_placement!r}"),
            (self.queue_depth >= 1, f"--queue-depth must be >= 1, got {self.queue_depth}"),
            (self.window >= 1, f"--window must be >= 1, got {self.window}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
            (self.timeout > 0, f"--timeout must be > 0, got {self.timeout}"),
            (0 <= self.port < 65536, f"--port must be in 0..65535, got {self.port}"),
            (self.transport in ("rpc", "p2p"), f"--transport must be rpc or p2p, got {self.transport!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SedonaError(message)


# Settings every process of a run must share: how blocks and replicas are laid out and connected. Under
# torchrun each rank reads them from its own command line; a block checks its own against the coordinator's,
# shipped in the setup handshake (the training options a block reads nowhere: it builds the coordinator's
# spec). Left out, as each machine's own: devices, threads, iface, port (a self-launched run only), resume.
AGREED = ("blocks", "replicas", "replica_placement", "transport", "queue_depth", "window", "timeout", "device_maps",
          "heartbeat", "heartbeat_timeout", "timeline")


def agreed_settings(pcfg: PipelineConfig) -> dict:
    """The settings of AGREED as `pcfg` has them (what the coordinator ships to every block)."""
    return {name: getattr(pcfg, name) for name in AGREED}


def check_agrees(pcfg: PipelineConfig, coordinator: dict, who: str = "") -> None:
    """SedonaError, one line naming the option, where this process (`who`, e.g. "block2"; "" in the block's
    own report, which names it) was started with a setting of AGREED other than the coordinator's
    `coordinator` (agreed_settings of its config)."""
    for name in AGREED:
        if name in coordinator and getattr(pcfg, name) != coordinator[name]:
            option = f"--{name.replace('_', '-')}"
            raise SedonaError(f"{who + ' was ' if who else ''}started with {option} {getattr(pcfg, name)!r}, the "
                              f"coordinator (rank 0) with {coordinator[name]!r}: start every rank with the same "
                              f"{option}")
