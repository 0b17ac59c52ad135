"""The replicas' gradient average: c10d all-reduce buckets over a block's replica group, overlapped with backward."""
from __future__ import annotations

import time

import torch

from sedona_runtime.pipeline.channel import ChannelError, ChannelTimeout
from sedona_runtime.pipeline.protocol import short
from sedona_runtime.pipeline.stop import STOP

_POLL_S = 0.0005  # all-reduce completion poll (a timed-out gloo wait poisons the group: no sliced waits)
FIRST_BUCKET_BYTES = 1 << 20   # DistributedDataParallel's defaults: a small first bucket starts early,
BUCKET_BYTES = 25 << 20        # then 25 MiB buckets


class _Bucket:
    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.flat = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
        self.offsets, off = {}, 0
        for p in params:
            self.offsets[id(p)] = (off, p.numel())
            off += p.numel()
        self.seen: set[int] = set()
        self.work = None


class GradSync:
    """Averages one block's gradients (layers and head) over its R replicas: `BlockRunner.grad_sync`.

    As DistributedDataParallel does: the parameters in reverse order (backward produces the last
    layers' gradients first) fill flat buckets (one dtype and device each, 1 MiB first, then 25 MiB);
    a hook copies each gradient into its bucket as backward accumulates it, and a full bucket is
    divided by R and all-reduced (SUM) at once, in bucket order on every replica (c10d matches
    collectives by order), while backward goes on. The call after backward launches what is left,
    waits (bounded by `timeout` and the stop signal) and copies the averages back into the gradients.
    Each element is sum_r g_r / R whatever the bucketing. Parameters without a gradient contribute
    zeros and keep no gradient (the same ones in every replica: the same block on the same shapes).
    A dead replica fails the wait (gloo reports the closed connection): a ChannelError, which the stage
    reports as a channel failure (the dead process is the root cause the coordinator names).
    """

    def __init__(self, group, module: torch.nn.Module, replicas: int, timeout: float, label: str = "",
                 bucket_bytes: int = BUCKET_BYTES, first_bucket_bytes: int = FIRST_BUCKET_BYTES) -> None:
        self.group, self.R, self.timeout, self.label = group, replicas, timeout, label
        self.buckets: list[_Bucket] = []
        self._of: dict[int, _Bucket] = {}
        current: list[torch.nn.Parameter] = []
        cap = first_bucket_bytes
        params = [p for p in module.parameters() if p.requires_grad]
        for p in reversed(params):
            if current and (p.dtype != current[0].dtype or p.device != current[0].device
                            or sum(q.numel() * q.element_size() for q in current) >= cap):
                self._add(current)
                current, cap = [], bucket_bytes
            current.append(p)
        if current:
            self._add(current)
        self._next = 0  # the next bucket to launch: buckets leave in order
        for p in params:
            p.register_post_accumulate_grad_hook(self._ready)

    def _add(self, params: list[torch.nn.Parameter]) -> None:
        bucket = _Bucket(params)
        self.buckets.append(bucket)
        for p in params:
            self._of[id(p)] = bucket

    def _ready(self, p: torch.Tensor) -> None:
        """Backward accumulated `p`'s gradient: copy it into its bucket; launch the buckets that are full."""
        bucket = self._of[id(p)]
        off, n = bucket.offsets[id(p)]
        bucket.flat[off:off + n].copy_(p.grad.reshape(-1))
        bucket.seen.add(id(p))
        while self._next < len(self.buckets) and len(self.buckets[self._next].seen) == len(self.buckets[self._next].params):
            self._launch(self.buckets[self._next])

    def _launch(self, bucket: _Bucket) -> None:
        for p in bucket.params:  # no gradient this step: zeros (a stale value must not be averaged)
            if id(p) not in bucket.seen:
                off, n = bucket.offsets[id(p)]
                bucket.flat[off:off + n].zero_()
        bucket.flat.div_(self.R)
        bucket.work = self.group.allreduce([bucket.flat])
        self._next += 1

    def __call__(self) -> None:
        """After backward: launch the rest, wait for every bucket, put the averages into the gradients."""
        try:
            while self._next < len(self.buckets):
                self._launch(self.buckets[self._next])
            for bucket in self.buckets:
                self._wait(bucket.work)
                for p in bucket.params:
                    if p.grad is not None and id(p) in bucket.seen:
                        off, n = bucket.offsets[id(p)]
                        p.grad.copy_(bucket.flat[off:off + n].view_as(p.grad))
        finally:
            self._next = 0
            for bucket in self.buckets:
                bucket.seen.clear()
                bucket.work = None

    def _wait(self, work) -> None:
        deadline = time.monotonic() + self.timeout
        while not work.is_completed():
            STOP.check()
            if time.monotonic() > deadline:
                raise ChannelTimeout(f"the gradient all-reduce of {self.label or 'the replicas'} did not finish "
                                     f"within {self.timeout:.0f}s")
            time.sleep(_POLL_S)
        try:
            work.wait()
        except RuntimeError as exc:  # gloo's closed connection: the symptom of a replica's death, not a bug
            raise ChannelError(f"the gradient all-reduce of {self.label or 'the replicas'} failed: "
                               f"{short(exc)}") from None
