"""Peak memory of an outer step, predicted before the search runs; the decision to recompute, or to refuse.

The prediction is traced, not guessed: one outer step's hypergradient (the stored graph of
`bilevel.hypergradient`, or the sweep of `recompute`) runs on a copy of the network, with its head layers,
at a few small batches and T (`step_bytes`), under a dispatch mode that counts the bytes of every storage
alive (from the op that makes it to the moment it is freed; on CUDA the allocator's own peak), and the
peak is extrapolated to the run's batch and T. (The meta device would need no arithmetic at all, but its
Python kernels cost more per op than these small real steps.) That is the step's working memory; to it
come what lives through the whole search: on CPU, the process as it is at the start (interpreter, torch,
data, the network) plus the weight memory (`memory_size` entries of weights and momentum, on the host) and
pretraining's momentum; on CUDA, the device memory allocated at the start plus pretraining's momentum.

On CPU the process's RSS exceeds the live bytes by what the allocator keeps (freed blocks not returned to the
system); `CPU_OVERHEAD` is that factor on the traced step, measured (benchmarks/README.md, "Search cost":
predicted vs measured peaks).
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sedona_runtime.search.relaxation import RelaxedNet
from sedona_runtime.utils.errors import SedonaError

GIB = 2**30
# RSS / traced live bytes of the outer step on CPU (glibc keeps freed blocks). Measured with
# benchmarks/search_cost.py (benchmarks/README.md, "Search cost"): the step's RSS growth over its trace was
# 1.07x for VGG-19 0.25x at batch 16 (stored, 1.5 GB) and 1.20-1.24x on ResNet-101/152 (stored and recomputed,
# 4-8 GB; five runs); 1.57x for the small net (0.3 GB, where fixed slack dominates). 1.25: the largest at
# real sizes, rounded up (a refusal that errs high costs a setting; one that errs low, a search killed later).
CPU_OVERHEAD = 1.25


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages that ops create while they are alive; `peak` is the maximum.

    Tensors made before the mode is entered are not counted (the caller adds them). Storages are told apart
    by their StorageImpl (views and in-place results add nothing) and leave the count when freed (their
    Python object lives exactly as long: PyTorch preserves it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, weakref.ref]] = {}  # StorageImpl address -> (bytes, weak reference)
        self.now = 0
        self.peak = 0

    def _see(self, t: Tensor) -> None:
        st = t.untyped_storage()
        key = st._cdata
        if key in self.live:
            return
        n = st.nbytes()

        def free(_: object, key: int = key) -> None:
            self.now -= self.live.pop(key, (0, None))[0]

        self.live[key] = (n, weakref.ref(st, free))  # a plain weak reference: weakref.finalize costs 10x more
        self.now += n
        self.peak = max(self.peak, self.now)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if isinstance(out, Tensor):  # the common case, without the pytree walk
            self._see(out)
        else:
            for t in tree_flatten(out)[0]:
                if isinstance(t, Tensor):
                    self._see(t)
        return out


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def traced_step_bytes(net: RelaxedNet, input_shape: tuple[int, ...], batch_size: int, val_batch_size: int,
                      inner_steps: int, *, recompute: bool, fast: bool = True, shards: int = 1) -> int:
    """Peak bytes alive during one outer step's hypergradient (T = `inner_steps` steps at `batch_size` images
    of `input_shape` (C, H, W), the validation loss on `val_batch_size`), run for real on a copy of `net`
    (`shards`: every batch cut into that many shards in this process, search/sharding.py).

    Counts what the step creates (unrolled weights, activations, graphs, gradients), not the network's own
    weights or the entry's momentum. On CUDA the allocator's peak; elsewhere `LiveBytes`.
    """
    from sedona_runtime.search.bilevel import InnerSettings, unrolled_val_loss
    from sedona_runtime.search.recompute import recomputed_sweep
    from sedona_runtime.search.second_order import fast_path
    from sedona_runtime.search.sharding import Sharding

    sharding = Sharding(shards)
    work = copy.deepcopy(net)  # its batch-norm buffers move; the caller's do not
    p0 = next(work.parameters())
    dev, dtype = p0.device, p0.dtype
    n, m = work.num_layers - 1, work.pool_size
    alpha = torch.zeros(n, 2, device=dev, dtype=dtype, requires_grad=True)
    beta = torch.zeros(n, m, device=dev, dtype=dtype, requires_grad=True)
    momentum = {k: torch.zeros_like(p) for k, p in work.named_parameters()}
    gen = torch.Generator().manual_seed(0)

    def batch(size: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(size, *input_shape, generator=gen, dtype=dtype)
        return x.to(dev), torch.randint(0, 2, (size,), generator=gen).to(dev)

    batches, val = [batch(batch_size) for _ in range(inner_steps)], batch(val_batch_size)
    inner = InnerSettings()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        tracker = None
    else:
        tracker = LiveBytes()
    with fast_path(work, fast), (tracker if tracker is not None else _nothing()):
        if recompute:
            result = recomputed_sweep(work, alpha, beta, batches, val, 0.01, inner, momentum, sharding)
        else:
            loss, _ = unrolled_val_loss(work, alpha, beta, batches, val, 0.01, inner, momentum, sharding)
            result = torch.autograd.grad(loss, [alpha, beta], allow_unused=True)
        del result
    if tracker is not None:
        return tracker.peak
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) - before


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# The batches and T at which the step is traced: small (seconds), two of each to fit the dependence on both.
PROBE_BATCHES = (4, 8)
PROBE_STEPS = (1, 2)
_TRACES: dict[tuple, int] = {}


def _cached_trace(net: RelaxedNet, input_shape: tuple[int, ...], batch_size: int, val_batch_size: int,
                  inner_steps: int, recompute: bool, fast: bool) -> int:
    # A trace depends only on the network's structure and these settings: a process that starts several
    # searches of one network (tests, a resume) traces each once.
    p0 = next(net.parameters())
    key = (str(net), tuple(input_shape), batch_size, val_batch_size, inner_steps, bool(recompute), bool(fast),
           str(p0.device), str(p0.dtype))
    if key not in _TRACES:
        _TRACES[key] = traced_step_bytes(net, input_shape, batch_size, val_batch_size, inner_steps,
                                         recompute=recompute, fast=fast)
    return _TRACES[key]


def step_bytes_bound(net: RelaxedNet, input_shape: tuple[int, ...], batch_size: int, val_batch_size: int,
                     inner_steps: int, *, recompute: bool, fast: bool = True) -> int:
    """An upper bound on `step_bytes` from one trace: T x max(B / b, 1) x the step at batch b =
    PROBE_BATCHES[0] and T = 1 (the same way: stored or recomputed).

    With a + bB + cT + dBT and every term non-negative (bytes per step, per image, per image and step),
    (B / b) T (a + b b + c + d b) exceeds it for B >= b and T >= 1. `plan_search_memory` traces in full only
    where this bound does not fit.
    """
    b = PROBE_BATCHES[0]
    ratio = val_batch_size / batch_size
    one = _cached_trace(net, input_shape, b, max(1, round(b * ratio)), 1, recompute, fast)
    return int(one * max(batch_size / b, 1.0) * max(inner_steps, 1))


def step_bytes(net: RelaxedNet, input_shape: tuple[int, ...], batch_size: int, val_batch_size: int,
               inner_steps: int, *, recompute: bool, fast: bool = True) -> int:
    """Peak bytes of one outer step at (`batch_size`, T = `inner_steps`), extrapolated from four small traces.

    What a step holds is a + b B + c T + d B T: weights and their gradients per step (a, c), activations
    per image (b) and per image and step (d), the validation batch kept in proportion to the batch
    (val_batch_size / batch_size). The four coefficients come from `traced_step_bytes` at B in
    PROBE_BATCHES and T in PROBE_STEPS (exact where the traces are; tests/search/test_search_memory_model.py
    checks the extrapolation against a trace at the target).
    """
    ratio = val_batch_size / batch_size
    (b1, b2), (t1, t2) = PROBE_BATCHES, PROBE_STEPS
    got = {(b, t): _cached_trace(net, input_shape, b, max(1, round(b * ratio)), t, recompute, fast)
           for b in (b1, b2) for t in (t1, t2)}
    # Bilinear interpolation's formula, used outside the square.
    u, v = (batch_size - b1) / (b2 - b1), (inner_steps - t1) / (t2 - t1)
    value = (got[b1, t1] * (1 - u) * (1 - v) + got[b2, t1] * u * (1 - v) + got[b1, t2] * (1 - u) * v
             + got[b2, t2] * u * v)
    return max(int(value), 0)


@dataclass
class PeakEstimate:
    """A predicted peak, in bytes: `step` (the traced outer step, overhead included) + `resident` (what
    lives through the search: the process or the device memory at the start, weight memory, momentum)."""

    step: int
    resident: int

    @property
    def total(self) -> int:
        return self.step + self.resident


def predict_peak(net: RelaxedNet, device: torch.device, input_shape: tuple[int, ...], batch_size: int,
                 val_batch_size: int, inner_steps: int, memory_size: int, *, recompute: bool,
                 fast: bool = True, resident_now: int | None = None, bound: bool = False) -> PeakEstimate:
    """The peak memory of `device` (RSS on CPU, allocated memory on CUDA) during the search's outer steps.

    `resident_now`: bytes in use before the search starts (default: this process's RSS on CPU, the memory
    allocated on CUDA); the module docstring says what is added to it. `bound`: the step by
    `step_bytes_bound` (one trace, an upper bound for either way) instead of `step_bytes`.
    """
    params = _bytes(net.parameters())
    state = _bytes(net.state_dict().values())
    if bound:
        step = step_bytes_bound(net, input_shape, batch_size, val_batch_size, inner_steps, recompute=recompute,
                                fast=fast)
    else:
        step = step_bytes(net, input_shape, batch_size, val_batch_size, inner_steps, recompute=recompute, fast=fast)
    if device.type == "cuda":
        now = torch.cuda.memory_allocated(device) if resident_now is None else resident_now
        # The entry and pretraining's momentum on the device; the memory's entries stay on the host.
        return PeakEstimate(step=step, resident=now + state + 2 * params)
    now = _process_rss() if resident_now is None else resident_now
    return PeakEstimate(step=int(step * CPU_OVERHEAD), resident=now + memory_size * (state + params) + 2 * params)


def _process_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def device_memory(device: torch.device) -> int:
    """Bytes of memory of `device`: the GPU's total memory, or on CPU the machine's (or its cgroup's limit)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    import psutil

    total = psutil.virtual_memory().total
    try:  # a container's limit (cgroup v2) is what the kernel enforces
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text != "max":
            total = min(total, int(text))
    except (OSError, ValueError):
        pass
    return total


@dataclass
class MemoryPlan:
    """The decision taken at the start of a search: whether to recompute, why, and the predicted peaks."""

    recompute: bool
    stored: PeakEstimate | None  # None where it was not needed (recompute asked for)
    recomputed: PeakEstimate | None
    capacity: int
    note: str  # one line for the user
    bound: PeakEstimate | None = None  # the upper bound that sufficed, if one did


def plan_memory(requested: bool | None, capacity: int, predict: Any, bound: Any = None, more_shards: Any = None,
                recomputed_how: str = "") -> MemoryPlan:
    """Decide `recompute` for a search on a device of `capacity` bytes; `predict(recompute)` -> PeakEstimate;
    `bound(recompute)` -> a PeakEstimate above that way's (cheaper; where the bound of the way `requested`,
    or of the stored graph, fits, nothing else is predicted); `more_shards()` -> (a phrase naming the setting,
    e.g. "--shards 4 --recompute", its PeakEstimate) for the fewest shards whose recomputed step fits, or None;
    `recomputed_how`: words on how the recomputed step runs, for the start line.

    `requested` None (the default): the stored graph if its predicted peak fits, else recomputation, saying
    so. True/False: as asked. SedonaError, in one line naming the setting to change (--recompute, --shards,
    --batch-size, --devices), where the chosen way's predicted peak exceeds `capacity`.
    """
    cap = f"{capacity / GIB:.1f} GiB"
    how = f", {recomputed_how}" if recomputed_how else ""
    if bound is not None:
        most = bound(bool(requested))
        if most.total <= capacity:
            way = f"--recompute{how}" if requested else "stored graph"
            return MemoryPlan(bool(requested), None, None, capacity,
                              f"memory: predicted peak at most {most.total / GIB:.1f} GiB of {cap} ({way})", most)
    stored = predict(False) if requested is not True else None
    if stored is not None and stored.total <= capacity:
        return MemoryPlan(False, stored, None, capacity,
                          f"memory: predicted peak {stored.total / GIB:.1f} GiB of {cap} (stored graph)")
    if requested is False:
        raise SedonaError(f"memory: the stored unrolled graph's predicted peak is {stored.total / GIB:.1f} GiB, "
                          f"more than the device's {cap}: pass --recompute (or lower --batch-size, or add --devices)")
    rec = predict(True)
    if rec.total > capacity:
        found = more_shards() if more_shards is not None else None
        hint = (f"{found[0]} would peak at {found[1].total / GIB:.1f} GiB (batch norm then per shard: a different "
                "search), or " if found else "")
        raise SedonaError(f"memory: the predicted peak is {rec.total / GIB:.1f} GiB even with --recompute, more "
                          f"than the device's {cap}: {hint}lower --batch-size or spread the batch over --devices")
    if requested is None:
        note = (f"memory: the stored graph would peak at {stored.total / GIB:.1f} GiB, more than {cap}: "
                f"recomputing each inner step instead (--recompute{how}; predicted {rec.total / GIB:.1f} GiB)")
    else:
        note = f"memory: predicted peak {rec.total / GIB:.1f} GiB of {cap} (--recompute{how})"
    return MemoryPlan(True, stored, rec, capacity, note)


def shard_rows(rows: int, shards: int) -> int:
    """Rows of the largest of `shards` shards of `rows` (search/sharding.py: sizes differ by at most one)."""
    return -(-rows // shards)


def plan_search_memory(net: RelaxedNet, device: torch.device, input_shape: tuple[int, ...], batch_size: int,
                       val_batch_size: int, inner_steps: int, memory_size: int, *, requested: bool | None,
                       fast: bool = True, capacity: int | None = None, shards: int = 1,
                       processes: bool = False) -> MemoryPlan:
    """`plan_memory` for a search of `net` on `device` (capacity: `device_memory(device)` unless given) whose
    batches (`batch_size`, `val_batch_size`: whole batches) are cut into `shards` shards, all in this process
    or (`processes`) one per process. What a step holds: the stored graph, every shard this process computes
    (the whole batch in one process); the recomputed sweep, one shard at a time (search/recompute.py).
    Where even that does not fit, the refusal names the fewest shards (2, 4, 8, ...; each of 2 rows or more)
    whose recomputed step fits: `--shards R` in one process, R devices under several."""
    cap = device_memory(device) if capacity is None else capacity

    def predict(recompute: bool, bound: bool = False, r: int = shards) -> PeakEstimate:
        held = 1 if (recompute or processes) else r  # shards whose graphs are alive at once
        rows, val = shard_rows(batch_size, r) * held, shard_rows(val_batch_size, r) * held
        return predict_peak(net, device, input_shape, min(rows, batch_size), min(val, val_batch_size), inner_steps,
                            memory_size, recompute=recompute, fast=fast, bound=bound)

    def more_shards() -> tuple[str, PeakEstimate] | None:
        for r in (2, 4, 8, 16, 32, 64):
            if r <= shards or batch_size // r < 2 or val_batch_size // r < 2:
                continue
            est = predict(True, r=r)
            if est.total <= cap:
                return (f"{r} devices (--devices)" if processes else f"--shards {r} --recompute"), est
        return None

    how = f"one shard of {shard_rows(batch_size, shards)} rows at a time" if shards > 1 and not processes else ""
    return plan_memory(requested, cap, predict, bound=lambda recompute: predict(recompute, bound=True),
                       more_shards=more_shards, recomputed_how=how)
