"""The CUDA hand-off between a transport and a block: stream order, allocator safety, host staging.

Every rule here is a no-op for CPU tensors, so CPU runs take the same code path unchanged.

Receiving (`on_arrival` on the transport's thread, `on_take` on the block's thread):
- A transport fills a received CUDA tensor on a stream of its own (TensorPipe: a stream from the
  global pool, a different one per message; the p2p channel: its receive stream) and hands the
  tensor over once the copy is *enqueued*, not done. `on_arrival` records an event on that stream;
  `on_take` makes the consumer's current stream wait for it before any kernel touches the tensor,
  and `record_stream`s the tensor on the consumer's stream so the caching allocator cannot hand its
  memory to the producer's stream while the consumer still reads it (PyTorch's CUDA semantics notes,
  "stream semantics of the caching allocator"; pytorch/pytorch#57475 is the RPC instance).
- Host tensors for a CUDA consumer (gloo p2p between blocks on one GPU, RPC without device maps, the
  coordinator's raw batches) are copied to the consumer's device on a copy stream of the receiving
  thread, `non_blocking`, and handed over with that copy's arrival event like a device-to-device
  arrival: the copy overlaps the block's kernels instead of queueing behind them on its compute stream.
  TensorPipe's host tensors are copied as they are (no extra pinned copy first: the driver stages a
  pageable copy itself, and it blocks the receiving thread only); the p2p receiver's are pinned already.

Sending (`HostStager`): a CUDA tensor that must cross through host memory (no device-to-device
path) is copied on a side stream into pinned memory once the producer's `ready` event fired (the
block's forward, not its backward and optimizer step), and the send waits for that copy's event
only: never a device-wide synchronize on the block's thread. Its events are blocking (the staging
threads sleep in `synchronize()` instead of spinning a core).
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

import torch

from sedona_runtime.pipeline.tree import map_tensors, tensors


def has_cuda(obj: Any) -> bool:
    return any(t.is_cuda for t in tensors(obj))


@dataclasses.dataclass
class Arrival:
    """A received item whose CUDA tensors are complete once `events` (one (device, event) per device) fired."""

    item: Any
    events: list


def record_arrival(item: Any) -> Any:
    """On the receiving thread, under the stream(s) the tensors were received on: Arrival, or `item` as is."""
    devices = {t.device for t in tensors(item) if t.is_cuda}
    if not devices:
        return item
    events = []
    for dev in devices:
        ev = torch.cuda.Event()
        ev.record(torch.cuda.current_stream(dev))
        events.append((dev, ev))
    return Arrival(item, events)


_COPY_STREAMS: dict[torch.device, "torch.cuda.Stream"] = {}
_COPY_LOCK = threading.Lock()


def copy_stream(device: torch.device) -> "torch.cuda.Stream":
    """The process's host-to-device copy stream for `device` (one per device, shared by receiving threads)."""
    with _COPY_LOCK:
        if device not in _COPY_STREAMS:
            _COPY_STREAMS[device] = torch.cuda.Stream(device)
        return _COPY_STREAMS[device]


def on_arrival(item: Any, consumer: torch.device) -> Any:
    """What a transport stores for a consumer on `consumer`, on its receiving thread, under the stream(s)
    its CUDA tensors were received on: an Arrival whose tensors are all on the consumer's GPU (host
    tensors copied there on `copy_stream`), or `item` as it is for a CPU consumer."""
    consumer = torch.device(consumer)
    if consumer.type != "cuda" or not torch.cuda.is_available():
        return record_arrival(item)
    if consumer.index is None:
        consumer = torch.device("cuda", torch.cuda.current_device())
    arrival = record_arrival(item)
    events = arrival.events if isinstance(arrival, Arrival) else []
    if any(not t.is_cuda for t in tensors(item)):
        stream = copy_stream(consumer)
        with torch.cuda.stream(stream):  # allocated and filled on the copy stream; on_take orders the reads
            item = map_tensors(item, lambda t: t if t.is_cuda else t.to(consumer, non_blocking=True))
            ev = torch.cuda.Event()
            ev.record(stream)
        events.append((consumer, ev))
    return Arrival(item, events) if events else item


def on_take(item: Any) -> Any:
    """On the consumer's thread: wait (on its current streams, not the host) for an Arrival; the item."""
    if not isinstance(item, Arrival):
        return item
    for dev, ev in item.events:
        torch.cuda.current_stream(dev).wait_event(ev)
    for t in tensors(item.item):
        if t.is_cuda:
            t.record_stream(torch.cuda.current_stream(t.device))
    return item.item


def _record_now() -> "torch.cuda.Event":
    ev = torch.cuda.Event()
    ev.record()
    return ev


def contiguous_before_send(item: Any, ready: Any, record: Callable[[], Any] = _record_now) -> tuple[Any, Any]:
    """On the producer's thread, before the item leaves it: (item with every tensor contiguous, the event a
    sender must wait for). A transport sends a tensor's bytes as they lie, after `ready` only, so a strided
    tensor (channels_last, a transpose) made contiguous later, on the sending thread's stream, would be read
    before it is written. When a copy was needed here, `ready` no longer covers it: a fresh event, recorded
    (`record`) after the copies on the producer's current stream, replaces it. BlockRunner's outputs are
    contiguous before their `ready` already, so this copies only what other callers hand in.
    """
    copied = False

    def _contiguous(t: torch.Tensor) -> torch.Tensor:
        nonlocal copied
        if t.is_contiguous():
            return t
        copied = True
        return t.contiguous()

    item = map_tensors(item, _contiguous)
    if copied and ready is not None:
        ready = record()
    return item, ready


class HostStager:
    """Copies the CUDA tensors of items to pinned host memory on one side stream per device."""

    def __init__(self) -> None:
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def _stream(self, device: torch.device) -> "torch.cuda.Stream":
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]

    def stage(self, item: Any, ready: "torch.cuda.Event | None" = None) -> tuple[Any, "torch.cuda.Event | None"]:
        """(item with host tensors, event after which they hold the data); (item, None) without CUDA tensors.

        `ready`: an event after which the producer has written the tensors; None waits for all work
        enqueued on the producer's current stream so far.
        """
        if not has_cuda(item):
            return item, None
        events: list = []

        def _copy(t: torch.Tensor) -> torch.Tensor:
            if not t.is_cuda:
                return t
            side = self._stream(t.device)
            if ready is not None:
                side.wait_event(ready)
            else:
                side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
                host.copy_(t, non_blocking=True)
                t.record_stream(side)  # t's memory stays allocated until the side stream has read it
                ev = torch.cuda.Event(blocking=True)  # waited for by a staging thread: sleep, not spin
                ev.record(side)
            events.append(ev)
            return host

        staged = map_tensors(item, _copy)
        return staged, events[-1] if len(events) == 1 else _AllEvents(events)


class _AllEvents:
    """Several events (tensors on several devices) behind one `synchronize()`."""

    def __init__(self, events: list) -> None:
        self.events = events

    def synchronize(self) -> None:
        for ev in self.events:
            ev.synchronize()
