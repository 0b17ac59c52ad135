"""Channels over c10d point-to-point send/recv: the receiver posts buffers, a full queue blocks the sender.

One edge (rank a -> rank b) carries items in order: for each, a header on the gloo group (wire.py),
then its tensors on the edge's data group (NCCL between two GPUs, else the gloo group). Both ends
run a thread that issues and waits for the c10d operations (gloo send/recv complete only inside
`wait`, and a timed-out gloo wait poisons the group, so they cannot be sliced into polls); the
block's thread only ever waits on Python conditions, bounded and stop-aware.

Bounded like the RPC queues: the receiver's thread posts the receives of the next item only while
its queue has room (`depth` items), gloo and NCCL sends complete only against a posted receive, and
a sender keeps at most `window` items unfinished, so a full queue blocks the sender.
"""
from __future__ import annotations

import collections
import datetime
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from sedona_runtime.pipeline import cuda_handoff, wire
from sedona_runtime.pipeline.bounded_queue import END, BoundedQueue, Broken, Failure
from sedona_runtime.pipeline.channel import Aborted, ChannelError, ChannelTimeout, RecvChannel, SendChannel
from sedona_runtime.pipeline.protocol import short
from sedona_runtime.pipeline.stop import STOP

_NCCL_POLL_S = 0.0005


@dataclass
class Edge:
    """One direction between two ranks: the peer, its name (for messages), the group tensors travel on."""

    peer: int
    name: str
    data_group: Any = None       # a 2-rank NCCL group, or None for the default (gloo) group
    nccl: bool = False
    timeout: float = 300.0       # bound on one c10d operation (the group's own timeout is the same)


def _wait(work: Any, edge: Edge) -> None:
    """Wait for one c10d operation: gloo in `wait` (bounded), NCCL by polling its completion on the host."""
    if edge.nccl:
        deadline = time.monotonic() + edge.timeout
        while not work.is_completed():
            if time.monotonic() > deadline:
                raise ChannelTimeout(f"an NCCL transfer with {edge.name} did not finish within {edge.timeout:.0f}s")
            time.sleep(_NCCL_POLL_S)
        work.wait()
    else:
        work.wait(timeout=datetime.timedelta(seconds=edge.timeout))


@dataclass
class _Job:
    item: Any
    ready: Any = None                 # event after which the item's host copies hold the data
    done: bool = False
    error: BaseException | None = None


class P2pSendChannel(SendChannel):
    """The sending end: a thread sends queued items in order; at most `window` items unfinished."""

    def __init__(self, edge: Edge, window: int = 2) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.edge, self.window = edge, window
        self._jobs: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._stager = cuda_handoff.HostStager() if torch.cuda.is_available() else None
        self._side: dict = {}
        self._thread = threading.Thread(target=self._run, name=f"p2p-send-{edge.name}", daemon=True)
        self._thread.start()
        self.last_wait_s = 0.0

    # -- the block's side ---------------------------------------------------------------------------------
    def _settle(self, keep: int, timeout: float) -> None:
        """Wait until at most `keep` items are unfinished, raising the first send error."""
        with self._cond:
            STOP.wait_for(lambda: self._failed() is not None or self._unfinished() <= keep, timeout,
                          f"{self.edge.name} to accept an item", cond=self._cond)
            failed = self._failed()
            if failed is not None:
                raise ChannelError(f"sending to {self.edge.name} failed: {short(failed)}")

    def _unfinished(self) -> int:
        while self._jobs and self._jobs[0].done and self._jobs[0].error is None:
            self._jobs.popleft()
        return sum(1 for j in self._jobs if not j.done)

    def _failed(self) -> BaseException | None:
        return next((j.error for j in self._jobs if j.error is not None), None)

    def put(self, item: Any, timeout: float, ready: Any = None) -> None:
        STOP.check()
        t0 = time.perf_counter()
        self._settle(self.window - 1, timeout)
        self.last_wait_s = time.perf_counter() - t0
        job = _Job(item, ready)
        if not self.edge.nccl and self._stager is not None and cuda_handoff.has_cuda(item):
            job.item, job.ready = self._stager.stage(item, ready)  # gloo carries host memory only
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()

    def flush(self, timeout: float) -> None:
        self._settle(0, timeout)

    def close(self, timeout: float) -> None:
        self.put(END, timeout)
        self.flush(timeout)

    def fail(self, origin: str, message: str, timeout: float = 2.0) -> None:
        try:
            self.put(Failure(origin, message), timeout)
            self.flush(timeout)
        except Exception:  # best effort: the peer may be the one that died
            pass

    # -- the sending thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not any(not j.done for j in self._jobs):
                    self._cond.wait(0.5)
                job = next(j for j in self._jobs if not j.done)
            try:
                self._send(job)
            except BaseException as exc:  # noqa: BLE001 - reported to the block's thread by _settle
                job.error = exc
            with self._cond:
                job.done = True
                self._cond.notify_all()
            if job.error is not None or job.item is END or isinstance(job.item, Failure):
                return

    def _send(self, job: _Job) -> None:
        """Post every message of the item at once (gloo keeps them in order), then wait for each."""
        header, tail, tensors = wire.encode(job.item)
        if job.ready is not None and not self.edge.nccl:
            job.ready.synchronize()  # the host copies of the staged tensors are complete
        peer, gloo = self.edge.peer, _gloo(self.edge)
        posted = [(dist.isend(header, peer), gloo)]
        if tail is not None:
            posted.append((dist.isend(tail, peer), gloo))
        for t in tensors:
            if self.edge.nccl and t.is_cuda:
                posted.append((self._send_nccl(t, job.ready), self.edge))
            else:
                posted.append((dist.isend(t, peer), gloo))
        for work, edge in posted:
            _wait(work, edge)

    def _send_nccl(self, t: torch.Tensor, ready: Any) -> Any:
        side = self._side.get(t.device)
        if side is None:
            side = self._side[t.device] = torch.cuda.Stream(t.device)
        with torch.cuda.stream(side):  # NCCL orders its stream after this one: wait for `ready` only
            if ready is not None:
                side.wait_event(ready)
            else:
                side.wait_stream(torch.cuda.default_stream(t.device))
            return dist.isend(t, self.edge.peer, group=self.edge.data_group)


class HostBuffers:
    """Receive buffers in host memory, reused once nothing but this pool refers to their storage.

    A fresh large host tensor costs a page fault per 4 KiB on first touch (measured on this project's
    2-core machine: a fresh 32 MiB activation buffer 2-3x the cost of refilling one), so the receiver
    recycles buffers of the same shape and dtype like the posted buffers of torch.distributed.pipelining.
    A buffer is reused only when its storage has no other user (no tensor, view or autograd saved
    tensor of the consumer holds it), read with torch's storage use count; without that count every
    receive allocates.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._free: dict[tuple, list[torch.Tensor]] = {}
        self._count = getattr(torch._C, "_storage_Use_Count", None)

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, pin: bool) -> torch.Tensor:
        key = (tuple(shape), dtype, pin)
        bufs = self._free.setdefault(key, [])
        if self._count is not None:
            for b in bufs:
                if self._count(b.untyped_storage()._cdata) == 1:  # only this pool's tensor holds it
                    return b
        b = torch.empty(shape, dtype=dtype, pin_memory=pin)
        if self._count is not None:
            bufs.append(b)
            del bufs[:-self.keep]  # bounded: the oldest buffers are simply forgotten
        return b


class P2pRecvChannel(RecvChannel):
    """The receiving end: a thread posts the next item's receives whenever the queue has room."""

    def __init__(self, edge: Edge, depth: int, device: torch.device) -> None:
        self.edge, self.device = edge, torch.device(device)
        self._queue = BoundedQueue(depth)
        self._quit = threading.Event()
        self._stream = torch.cuda.Stream(self.device) if edge.nccl else None
        self._buffers = HostBuffers(keep=depth + 4)
        self._thread = threading.Thread(target=self._run, name=f"p2p-recv-{edge.name}", daemon=True)
        self._thread.start()

    def get(self, timeout: float) -> Any:
        return cuda_handoff.on_take(self._queue.get(timeout))

    def qsize(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._quit.set()

    def _run(self) -> None:
        try:
            while not self._quit.is_set():
                try:
                    self._queue.wait_room(1.0, "room in the input queue")
                except ChannelTimeout:
                    continue
                item = self._receive()
                self._queue.put_async(item)
                if item is END or isinstance(item, Failure):
                    return
        except Aborted:
            return
        except BaseException as exc:  # noqa: BLE001 - the block's next get raises it
            self._queue.put_async(Broken(f"receiving from {self.edge.name} failed: {short(exc)}"))

    def _receive(self) -> Any:
        gloo, peer = _gloo(self.edge), self.edge.peer
        header = torch.empty(wire.HEADER_BYTES, dtype=torch.uint8)
        _wait(dist.irecv(header, peer), gloo)
        tail = None
        if wire.tail_bytes(header):
            tail = torch.empty(wire.tail_bytes(header), dtype=torch.uint8)
            _wait(dist.irecv(tail, peer), gloo)
        skeleton, specs = wire.decode(header, tail)
        pin = self.device.type == "cuda"  # a CUDA consumer copies host tensors to its device asynchronously
        bufs = []
        for s in specs:
            if self.edge.nccl and s.cuda:
                with torch.cuda.stream(self._stream):  # one allocation stream: the cache stays bounded
                    b = torch.empty(s.shape, dtype=s.dtype, device=self.device)
                    _wait(dist.irecv(b, peer, group=self.edge.data_group), self.edge)
            else:
                b = self._buffers.take(s.shape, s.dtype, pin)
                _wait(dist.irecv(b, peer), gloo)
            bufs.append(b)
        item = wire.fill(skeleton, bufs)
        if self._stream is None:
            return item
        with torch.cuda.stream(self._stream):  # the NCCL receives are ordered before this event
            return cuda_handoff.record_arrival(item)


def _gloo(edge: Edge) -> Edge:
    """The same edge as seen by the gloo group (headers always travel there)."""
    return Edge(edge.peer, edge.name, None, False, edge.timeout) if edge.nccl else edge
