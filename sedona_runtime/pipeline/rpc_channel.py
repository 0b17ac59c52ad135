"""Channels over torch.distributed.rpc: a bounded queue owned by the receiver, fed by asynchronous puts."""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
from typing import Any

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline import cuda_handoff
from sedona_runtime.pipeline.bounded_queue import BoundedQueue
from sedona_runtime.pipeline.messages import END, Failure
from sedona_runtime.pipeline.channel import ChannelError, RecvChannel, SendChannel
from sedona_runtime.pipeline.protocol import STATE, rpc_put, short
from sedona_runtime.pipeline.stop import STOP

_SENDER_IDS = itertools.count()


class RpcRecvChannel(RecvChannel):
    """The owning end: registers a bounded queue under `name` in this process (before joining the group)."""

    def __init__(self, name: str, depth: int) -> None:
        self.name = name
        self._queue = BoundedQueue(depth)
        STATE.register_queue(name, self._queue)

    def get(self, timeout: float) -> Any:
        return cuda_handoff.on_take(self._queue.get(timeout))

    def qsize(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        STATE.unregister_queue(self.name)

    unregister = close


class RpcSendChannel(SendChannel):
    """The sending end: each put is one asynchronous RPC; at most `window` of them unacknowledged.

    `device_map`: a TensorPipe device map to the peer was set (start_rpc), so CUDA tensors travel device
    to device and the receiver's cuda_handoff orders its reads after the arrival. Without one, CUDA
    tensors are staged through pinned host memory off the block's thread (cuda_handoff.HostStager) and
    the receiver copies them to its device: more copies, but one allocation stream and no
    TensorPipe pool-stream caches on the receiver.
    """

    def __init__(self, peer: str, queue: str, window: int = 2, device_map: bool = False) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.peer, self.queue, self.window, self.device_map = peer, queue, window, device_map
        self._pending: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._sender = f"{rpc.get_worker_info().name}#{next(_SENDER_IDS)}"
        self._seq = itertools.count()
        self._stager: cuda_handoff.HostStager | None = None
        self._staging: concurrent.futures.ThreadPoolExecutor | None = None
        self._side: "torch.cuda.Stream | None" = None   # device maps: the stream rpc_async is called under
        self.last_wait_s = 0.0

    def _side_stream(self) -> "torch.cuda.Stream":
        if self._side is None:
            self._side = torch.cuda.Stream(torch.cuda.current_device())
        return self._side

    def _notify(self, _fut: Any) -> None:
        with self._cond:
            self._cond.notify_all()

    def _send(self, seq: int, item: Any, timeout: float) -> torch.futures.Future:
        try:
            fut = rpc.rpc_async(self.peer, rpc_put, args=(self.queue, self._sender, seq, item), timeout=timeout)
        except Exception as exc:  # the agent refuses at once when the peer is known to be gone
            raise ChannelError(f"cannot send to {self.peer}: {short(exc)}") from exc
        fut.add_done_callback(self._notify)
        return fut

    def _send_staged(self, seq: int, item: Any, ready: Any, timeout: float) -> torch.futures.Future:
        """Copy to host on a side stream; a helper thread waits for that copy, then sends."""
        if self._stager is None:
            self._stager = cuda_handoff.HostStager()
            self._staging = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rpc-staging")
        host, copied = self._stager.stage(item, ready)
        done: torch.futures.Future = torch.futures.Future()

        def _go() -> None:
            try:
                copied.synchronize()
                inner = self._send(seq, host, timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting sender
                done.set_exception(exc)
                self._notify(done)
                return
            inner.add_done_callback(lambda f: _chain(f, done))

        self._staging.submit(_go)
        done.add_done_callback(self._notify)
        return done

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
                    raise ChannelError(f"sending to {self.peer} failed: {short(exc)}") from exc

    def put(self, item: Any, timeout: float, ready: Any = None) -> None:
        STOP.check()
        t0 = time.perf_counter()
        self._settle(self.window - 1, timeout)
        self.last_wait_s = time.perf_counter() - t0
        seq = next(self._seq)
        if self.device_map and ready is not None and cuda_handoff.has_cuda(item):
            # TensorPipe orders its send streams after the caller's current stream: under the block's own
            # stream that is the whole step queued so far (backward, optimizer). A side stream that waited
            # for `ready` (the forward) only lets the transfer overlap the rest of the step.
            side = self._side_stream()
            side.wait_event(ready)
            with torch.cuda.stream(side):
                fut = self._send(seq, item, timeout)
        elif self.device_map or not cuda_handoff.has_cuda(item):
            fut = self._send(seq, item, timeout)
        else:
            fut = self._send_staged(seq, item, ready, timeout)
        with self._cond:
            self._pending.append(fut)

    def flush(self, timeout: float) -> None:
        self._settle(0, timeout)

    def close(self, timeout: float) -> None:
        self.put(END, timeout)
        self.flush(timeout)

    def fail(self, origin: str, message: str, timeout: float = 2.0, channel: bool = False) -> None:
        try:
            rpc.rpc_async(self.peer, rpc_put, args=(self.queue, self._sender, next(self._seq),
                                                    Failure(origin, message, channel)), timeout=timeout)
        except Exception:  # best effort: the peer may be the one that died
            pass


def _chain(src: torch.futures.Future, dst: torch.futures.Future) -> None:
    try:
        dst.set_result(src.wait())
    except BaseException as exc:  # noqa: BLE001
        dst.set_exception(exc)
