"""Channels over torch.distributed.rpc: a bounded queue owned by the receiver, fed by async puts."""
from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from typing import Any

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline.bounded_queue import END, BoundedQueue, _Error
from sedona_runtime.pipeline.channel import ChannelError, RecvChannel, SendChannel
from sedona_runtime.pipeline.stop import STOP

# Queues owned by this process, by name. RPC handlers look them up; they only ever enqueue.
_QUEUES: dict[str, BoundedQueue] = {}
_QUEUES_LOCK = threading.Lock()
_SENDER_IDS = itertools.count()


@rpc.functions.async_execution
def _rpc_put(queue: str, sender: str, seq: int, item: Any) -> torch.futures.Future:
    """Runs on the owner: enqueue without blocking; the reply is sent once the item is accepted."""
    with _QUEUES_LOCK:
        q = _QUEUES.get(queue)
    if q is None:
        fut: torch.futures.Future = torch.futures.Future()
        fut.set_exception(ChannelError(f"no queue named {queue!r} on {rpc.get_worker_info().name}"))
        return fut
    return q.put_async(item, sender, seq)


def _rpc_ping() -> int:
    """Liveness probe; answers this process's pid (tests use it to find the processes)."""
    return os.getpid()


def _rpc_abort(reason: str) -> None:
    """Ask this process to stop: every pipeline wait raises Aborted(reason) within a poll slice."""
    STOP.set(reason)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu() if obj.device.type != "cpu" else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        for k in obj.__dataclass_fields__:
            setattr(obj, k, _to_cpu(getattr(obj, k)))
    return obj


class RpcRecvChannel(RecvChannel):
    """The owning end: registers a bounded queue under `name` in this process."""

    def __init__(self, name: str, depth: int) -> None:
        self.name = name
        self._queue = BoundedQueue(depth)
        with _QUEUES_LOCK:
            if name in _QUEUES:
                raise ValueError(f"queue {name!r} already registered")
            _QUEUES[name] = self._queue

    def get(self, timeout: float) -> Any:
        return self._queue.get(timeout)

    def qsize(self) -> int:
        return self._queue.qsize()

    def unregister(self) -> None:
        with _QUEUES_LOCK:
            _QUEUES.pop(self.name, None)


class RpcSendChannel(SendChannel):
    """The sending end: each put is one async RPC; at most `window` of them unacknowledged.

    With `to_cpu` (no TensorPipe device map to the peer), tensors are copied to host memory
    before sending; with a device map TensorPipe moves CUDA tensors directly between devices.
    """

    def __init__(self, peer: str, queue: str, window: int = 2, to_cpu: bool = True) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.peer, self.queue, self.window, self.to_cpu = peer, queue, window, to_cpu
        self._pending: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._sender = f"{rpc.get_worker_info().name}#{next(_SENDER_IDS)}"
        self._seq = itertools.count()
        self.last_wait_s = 0.0   # how long the last put waited for the window (backpressure), for the meters

    def _notify(self, _fut: torch.futures.Future) -> None:
        with self._cond:
            self._cond.notify_all()

    def _send(self, item: Any, timeout: float) -> torch.futures.Future:
        try:
            fut = rpc.rpc_async(self.peer, _rpc_put, args=(self.queue, self._sender, next(self._seq), item),
                                timeout=timeout)
        except Exception as exc:  # the agent refuses at once when the peer is known to be gone
            raise ChannelError(f"cannot send to {self.peer}: {_short(exc)}") from exc
        fut.add_done_callback(self._notify)
        return fut

    def _settle(self, keep: int, timeout: float) -> None:
        """Wait until at most `keep` puts are unacknowledged, raising the first transport error."""
        with self._cond:
            while len(self._pending) > keep:
                oldest = self._pending[0]
                STOP.wait_for(oldest.done, timeout, f"{self.peer} to accept an item", cond=self._cond)
                self._pending.popleft()
                try:
                    oldest.wait()
                except Exception as exc:
                    raise ChannelError(f"sending to {self.peer} failed: {_short(exc)}") from exc

    def put(self, item: Any, timeout: float) -> None:
        STOP.check()
        t0 = time.perf_counter()
        self._settle(self.window - 1, timeout)
        self.last_wait_s = time.perf_counter() - t0
        fut = self._send(_to_cpu(item) if self.to_cpu else item, timeout)
        with self._cond:
            self._pending.append(fut)

    def flush(self, timeout: float) -> None:
        self._settle(0, timeout)

    def close(self, timeout: float) -> None:
        self.put(END, timeout)
        self.flush(timeout)

    def fail(self, origin: str, message: str, timeout: float = 2.0) -> None:
        try:
            rpc.rpc_async(self.peer, _rpc_put, args=(self.queue, self._sender, next(self._seq), _Error(origin, message)),
                          timeout=timeout)
        except Exception:  # best effort: the peer may be the one that died
            pass


def _short(exc: BaseException) -> str:
    """First line of an RPC error (remote tracebacks are long and name internals)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
