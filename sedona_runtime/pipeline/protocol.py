"""The pipeline's protocol in one place: process names, queue names, process-wide state, RPC endpoints.

Every process of a pipelined run (rank 0 the coordinator, rank i block i) joins one RPC group, the
control plane: setup, reports, liveness, abort, release. Activations travel on a transport (the RPC
queues of rpc_channel.py or the c10d point-to-point channels of p2p_channel.py). The coordinator and
the worker both import this module and never each other.

RPC executes a function by its qualified name on the peer, so every endpoint lives here at module
level, and the state each endpoint touches is `STATE`, one object per process.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline.bounded_queue import BoundedQueue
from sedona_runtime.pipeline.channel import ChannelError
from sedona_runtime.pipeline.stop import STOP

COORDINATOR = "coord"    # RPC name of rank 0
INPUT_QUEUE = "input"    # every block owns one input queue under this name (rpc transport)
INBOX = "reports"        # the coordinator's queue of Reports from the blocks


def block_name(index: int) -> str:
    """RPC name of block `index` (1-based), which is also its rank."""
    return f"block{index}"


class SetupBroker:
    """The coordinator's side of the setup handshake.

    Every block registers itself (rank, host, device) and gets back, once all K have registered, the
    run's setup: the run's spec as config.json holds it (training.spec.RunSpec.to_json: all a block builds
    from), the process settings every rank must share (pipeline.config.AGREED), the resume step, every
    block's placement and the run-directory token. The handshake is what lets every process know every other's device (one
    placement table for both launch modes) before any activation moves.
    """

    def __init__(self, blocks: int, setup: dict) -> None:
        self.K, self.setup = blocks, setup
        self.placements: dict[int, dict] = {}
        self._waiting: list[torch.futures.Future] = []
        self._lock = threading.Lock()
        self.complete = threading.Event()

    def register(self, index: int, info: dict) -> torch.futures.Future:
        fut: torch.futures.Future = torch.futures.Future()
        with self._lock:
            self.placements[index] = info
            self._waiting.append(fut)
            ready = len(self.placements) == self.K
            waiting = list(self._waiting) if ready else []
        if ready:
            self.setup["placements"] = {i: self.placements[i] for i in sorted(self.placements)}
            self.complete.set()
            for f in waiting:
                f.set_result(self.setup)
        return fut


@dataclass
class ProcessState:
    """What RPC handlers of this process see. Reset by `reset()` when a process runs a second pipeline."""

    queues: dict[str, BoundedQueue] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    broker: SetupBroker | None = None                      # the coordinator's, while it sets up
    release: threading.Event = field(default_factory=threading.Event)  # a block may leave the group
    device: torch.device = torch.device("cpu")             # where this process consumes what it receives

    def register_queue(self, name: str, queue: BoundedQueue) -> None:
        with self.lock:
            if name in self.queues:
                raise ValueError(f"queue {name!r} already registered")
            self.queues[name] = queue

    def unregister_queue(self, name: str) -> None:
        with self.lock:
            self.queues.pop(name, None)

    def reset(self) -> None:
        with self.lock:
            self.queues.clear()
        self.broker = None
        self.release.clear()


STATE = ProcessState()


# -- RPC endpoints (run on the callee) ----------------------------------------------------------------
@rpc.functions.async_execution
def rpc_put(queue: str, sender: str, seq: int, item: Any) -> torch.futures.Future:
    """Enqueue `item` without blocking; the reply goes back once the queue accepted it (backpressure)."""
    from sedona_runtime.pipeline import cuda_handoff

    with STATE.lock:
        q = STATE.queues.get(queue)
    if q is None:
        fut: torch.futures.Future = torch.futures.Future()
        fut.set_exception(ChannelError(f"no queue named {queue!r} on {rpc.get_worker_info().name}"))
        return fut
    # Runs under the streams TensorPipe received on: mark when the tensors are complete, and pin host
    # tensors that a CUDA consumer will copy (cuda_handoff.py explains both).
    return q.put_async(cuda_handoff.on_arrival(item, STATE.device), sender, seq)


def rpc_ping() -> int:
    """Liveness probe; answers this process's pid (tests use it to find the processes)."""
    return os.getpid()


def rpc_abort(reason: str) -> None:
    """Ask this process to stop: every pipeline wait raises Aborted(reason) within a poll slice."""
    STOP.set(reason)


@rpc.functions.async_execution
def rpc_setup(index: int, info: dict) -> torch.futures.Future:
    """Runs on the coordinator: register block `index` (its placement `info`); the run's setup once all joined."""
    broker = STATE.broker
    if broker is None:
        fut: torch.futures.Future = torch.futures.Future()
        fut.set_exception(RuntimeError("the coordinator has no run set up"))
        return fut
    return broker.register(index, info)


def rpc_release() -> None:
    """Runs on a block: the coordinator has everything it needs from this block; it may leave the group."""
    STATE.release.set()


def short(exc: BaseException) -> str:
    """First line of an error (remote tracebacks are long and name internals)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
