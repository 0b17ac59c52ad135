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
from sedona_runtime.pipeline.bounded_queue import BoundedQueue, Broken
from sedona_runtime.pipeline.messages import END, Failure
from sedona_runtime.pipeline.channel import Aborted, ChannelError, ChannelTimeout, RecvChannel, SendChannel
from sedona_runtime.pipeline.protocol import short
from sedona_runtime.pipeline.stop import STOP

_NCCL_POLL_S = 0.0005
# gloo tags: headers and tensors are matched in order within their own tag, so a receiver can post the
# next item's header while the current item's tensors are still arriving.
HEADER_TAG, TENSOR_TAG = 1, 2


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
    posted: bool = False
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
        item, ready = cuda_handoff.contiguous_before_send(item, ready)  # before the sending thread reads it
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

    def fail(self, origin: str, message: str, timeout: float = 2.0, channel: bool = False) -> None:
        try:
            self.put(Failure(origin, message, channel), timeout)
            self.flush(timeout)
        except Exception:  # best effort: the peer may be the one that died
            pass

    # -- the sending thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        """Post the next item's messages, then finish the one before: a header travels while the previous
        item's tensors still do (two items in flight at most, both counted in the window)."""
        posted: collections.deque[tuple[_Job, list]] = collections.deque()
        while True:
            with self._cond:
                while not posted and not self._next_unposted():
                    self._cond.wait(0.5)
                job = self._next_unposted()
            if job is not None and len(posted) < 2:
                try:
                    posted.append((job, self._post(job)))
                except BaseException as exc:  # noqa: BLE001 - reported to the block's thread by _settle
                    self._finish(job, exc)
                    return
                job.posted = True
                if len(posted) < 2 and not (job.item is END or isinstance(job.item, Failure)):
                    continue  # post the next one too, if it is there, before waiting
            job, works = posted.popleft()
            error = None
            try:
                for work, edge in works:
                    _wait(work, edge)
            except BaseException as exc:  # noqa: BLE001
                error = exc
            self._finish(job, error)
            if error is not None or ((job.item is END or isinstance(job.item, Failure)) and not posted):
                return

    def _next_unposted(self) -> "_Job | None":
        return next((j for j in self._jobs if not j.posted), None)

    def _finish(self, job: _Job, error: BaseException | None) -> None:
        with self._cond:
            job.error, job.done, job.posted = error, True, True
            self._cond.notify_all()

    def _post(self, job: _Job) -> list:
        """Post every message of the item (header and tensors on their own gloo tags, each in order)."""
        header, tail, tensors = wire.encode(job.item)
        if job.ready is not None and not self.edge.nccl:
            job.ready.synchronize()  # the host copies of the staged tensors are complete
        peer, gloo = self.edge.peer, _gloo(self.edge)
        posted = [(dist.isend(header, peer, tag=HEADER_TAG), gloo)]
        if tail is not None:
            posted.append((dist.isend(tail, peer, tag=HEADER_TAG), gloo))
        for t in tensors:
            if self.edge.nccl and t.is_cuda:
                posted.append((self._send_nccl(t, job.ready), self.edge))
            else:
                posted.append((dist.isend(t, peer, tag=TENSOR_TAG), gloo))
        return posted

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
    2-core machine: a gloo receive of 32 MiB into a fresh buffer 22 ms, into a reused one 9-11 ms), so
    the receiver recycles buffers of the same shape and dtype like the posted buffers of
    torch.distributed.pipelining. A buffer is reused only when its storage has no other user (no tensor,
    view or autograd saved tensor of the consumer holds it), read with torch's storage use count; the
    consumer always gets an alias, never the pool's own tensor object. Without that count, and for pinned
    buffers (see `take`), every receive allocates.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._free: dict[tuple, list[torch.Tensor]] = {}
        self._count = getattr(torch._C, "_storage_Use_Count", None)
        # The count of a storage only the pool's tensor holds, as read here (reading it wraps the storage
        # in one more reference: 2 in torch 2.x).
        self._alone = self._use_count(torch.empty(1)) if self._count is not None else 0

    def _use_count(self, t: torch.Tensor) -> int:
        return int(self._count(t.untyped_storage()._cdata))

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, pin: bool) -> torch.Tensor:
        """A buffer of this shape and dtype, to receive into and hand to the consumer. The consumer gets an
        alias (its own tensor object on the same storage), so its holding it is visible in the count."""
        if pin:
            # Pinned memory comes from torch's caching host allocator, which already reuses blocks, and
            # only once the device copies recorded on them are done; a block's copy to its GPU is
            # asynchronous, so reusing a pinned buffer here could overwrite it mid-copy.
            return torch.empty(shape, dtype=dtype, pin_memory=True)
        key = (tuple(shape), dtype)
        bufs = self._free.setdefault(key, [])
        if self._count is not None:
            for b in bufs:
                if self._use_count(b) == self._alone:  # only this pool's tensor holds the storage
                    return b.detach()
        b = torch.empty(shape, dtype=dtype, pin_memory=pin)
        if self._count is None:
            return b
        bufs.append(b)
        del bufs[:-self.keep]  # bounded: the oldest buffers are simply forgotten
        return b.detach()


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
        header = None  # the next item's header receive, posted ahead while there is room for that item
        try:
            while not self._quit.is_set():
                if header is None:
                    try:
                        self._queue.wait_room(1.0, "room in the input queue")
                    except ChannelTimeout:
                        continue
                    header = self._post_header()
                item, header = self._receive(header)
                self._queue.put_async(item)
                if item is END or isinstance(item, Failure):
                    return
        except Aborted:
            return
        except BaseException as exc:  # noqa: BLE001 - the block's next get raises it
            self._queue.put_async(Broken(f"receiving from {self.edge.name} failed: {short(exc)}"))

    def _post_header(self) -> tuple[torch.Tensor, Any]:
        buf = torch.empty(wire.HEADER_BYTES, dtype=torch.uint8)
        return buf, dist.irecv(buf, self.edge.peer, tag=HEADER_TAG)

    def _receive(self, header: tuple[torch.Tensor, Any]) -> tuple[Any, Any]:
        """(this item, the next item's posted header receive or None): tensors of this item arrive while
        the next header is already posted, when the queue has room for both."""
        gloo, peer = _gloo(self.edge), self.edge.peer
        buf, work = header
        _wait(work, gloo)
        tail = None
        if wire.tail_bytes(buf):
            tail = torch.empty(wire.tail_bytes(buf), dtype=torch.uint8)
            _wait(dist.irecv(tail, peer, tag=HEADER_TAG), gloo)
        skeleton, specs = wire.decode(buf, tail)
        pin = self.device.type == "cuda"  # a CUDA consumer copies host tensors to its device asynchronously
        bufs, works = [], []
        for s in specs:
            if self.edge.nccl and s.cuda:
                with torch.cuda.stream(self._stream):  # one allocation stream: the cache stays bounded
                    b = torch.empty(s.shape, dtype=s.dtype, device=self.device)
                    works.append((dist.irecv(b, peer, group=self.edge.data_group), self.edge))
            else:
                b = self._buffers.take(s.shape, s.dtype, pin)
                works.append((dist.irecv(b, peer, tag=TENSOR_TAG), gloo))
            bufs.append(b)
        last = isinstance(skeleton, (Failure, type(END)))
        nxt = self._post_header() if not last and self._queue.qsize() + 2 <= self._queue.depth else None
        for w, edge in works:
            if edge.nccl:
                with torch.cuda.stream(self._stream):  # the stream waits for the NCCL receive
                    _wait(w, edge)
            else:
                _wait(w, edge)
        item = wire.fill(skeleton, bufs)
        if self._stream is not None:
            with torch.cuda.stream(self._stream):  # the NCCL receives are ordered before this event
                item = cuda_handoff.on_arrival(item, self.device)
        else:  # host buffers (pinned for a CUDA consumer) go to its GPU on the copy stream, here
            item = cuda_handoff.on_arrival(item, self.device)
        return item, nxt


def _gloo(edge: Edge) -> Edge:
    """The same edge as seen by the gloo group (headers always travel there)."""
    return Edge(edge.peer, edge.name, None, False, edge.timeout) if edge.nccl else edge
