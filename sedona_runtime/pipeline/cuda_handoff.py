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
- Host tensors that a CUDA consumer will copy to its device are moved into pinned memory on the
  transport's thread, so the consumer's `to(device, non_blocking=True)` is a real asynchronous copy
  instead of a pageable copy that waits for the device.

Sending (`HostStager`): a CUDA tensor that must cross through host memory (no device-to-device
path) is copied on a side stream into pinned memory once the producer's `ready` event fired (the
block's forward, not its backward and optimizer step), and the send waits for that copy's event
only: never a device-wide synchronize on the block's thread.
"""
from __future__ import annotations

import dataclasses
from typing import Any

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


def on_arrival(item: Any, consumer: torch.device) -> Any:
    """What a transport stores for a consumer on `consumer`: CUDA arrivals marked, host tensors pinned."""
    if has_cuda(item):
        return record_arrival(item)
    if consumer.type == "cuda" and torch.cuda.is_available():
        return map_tensors(item, lambda t: t if t.is_pinned() else t.pin_memory())
    return item


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
                ev = torch.cuda.Event()
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
