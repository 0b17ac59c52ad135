"""Device scalars read on the host without waiting: the latest values whose copy to the host completed."""
from __future__ import annotations

from typing import Any

import torch


class LazyRead:
    """Posts small device tensors to the host every step and reads back the latest completed post.

    CPU: `post` keeps the values themselves, so `latest` is always this step's. CUDA: `post` enqueues a
    non_blocking copy into one of `slots` pinned host buffers and records an event; `latest` returns the
    values of the newest post whose event has fired (`Event.query`, never a wait), so a progress line or a
    finiteness check every N steps costs no synchronisation. A post is skipped when every slot's copy is
    still in flight (the host ran that far ahead); the values read are then at most a few steps old.
    """

    def __init__(self, device: torch.device | str, slots: int = 4) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._slots: list[list[Any]] = []   # [pinned buffer, event or None, tag]
        self._latest: tuple[Any, list[float]] | None = None
        if self.cuda:
            self._slots = [[None, None, None] for _ in range(slots)]

    def post(self, tag: Any, *values: torch.Tensor) -> None:
        """Queue `values` (0-dim tensors on the device) for the host, labelled `tag` (e.g. the step)."""
        if not self.cuda:
            self._latest = (tag, [float(v.detach()) for v in values])
            return
        self._collect()
        slot = next((s for s in self._slots if s[1] is None), None)
        if slot is None:
            return
        packed = torch.stack([v.detach().to(torch.float64) for v in values])
        if slot[0] is None or slot[0].numel() != packed.numel():
            slot[0] = torch.empty(packed.shape, dtype=torch.float64, pin_memory=True)
        slot[0].copy_(packed, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        slot[1], slot[2] = ev, tag

    def _collect(self) -> None:
        """Take the newest completed post's values; free every completed slot."""
        done = [s for s in self._slots if s[1] is not None and s[1].query()]
        for s in sorted(done, key=lambda s: s[2]):
            self._latest = (s[2], s[0].tolist())
            s[1] = None

    def latest(self) -> tuple[Any, list[float]] | None:
        """(tag, values) of the newest post whose copy completed, or None when none has yet."""
        if self.cuda:
            self._collect()
        return self._latest
