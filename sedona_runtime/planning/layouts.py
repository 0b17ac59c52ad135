"""Step time and memory of every K blocks x R replicas layout on G devices, hosts and a link (pure arithmetic).

The cost model of `python -m sedona_runtime.plan --devices G` (docs/DESIGN.md, "The layout planner").
A layout runs K contiguous blocks, each as R replica processes (K * R devices); K = 1 is plain data
parallel backprop (DDP). Every formula below is stated once here; the tests recompute them by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from sedona_runtime.planning.cost_model import BACKWARD_FACTOR, CostModel
from sedona_runtime.utils.errors import SedonaError

# A CPU gloo ring all-reduce of 10 MiB between two single-core processes on this development machine took
# 11.2 ms (bus bandwidth 7.5 Gbit/s; benchmarks/README.md "The planner"): the default rate inside one host.
LOCAL_GBPS = 7.5
# Per hop of a ring step (gloo over TCP on loopback/veth): small next to the bytes at every size we plan.
HOP_LATENCY_S = 50e-6
# The share of a block's compute that its gradient all-reduce hides behind. DDP launches its buckets during
# the backward (at most BACKWARD_FACTOR / (1 + BACKWARD_FACTOR) of the compute), but measured here nothing
# was hidden: CPU ranks with one core each, gloo over a tc-limited link, DDP's step grew by the whole
# all-reduce at 10 Gbit/s, 1 Gbit/s and 200 Mbit/s (benchmarks/link.py, benchmarks/README.md "Where greedy
# wins"). So the model charges all of it (0.0); with NCCL on GPUs, whose copies run beside the kernels,
# up to BACKWARD_SHARE can hide (Hardware(overlap=...)).
BACKWARD_SHARE = BACKWARD_FACTOR / (1.0 + BACKWARD_FACTOR)
OVERLAP = 0.0
# Saved-for-backward activation bytes of one layer, as a multiple of its output's bytes (a bottleneck
# block keeps its input, three conv outputs, three batch-norm outputs, the ReLUs' masks: about 4x its
# output at the expanded width). An estimate, checked against measured peaks in benchmarks/README.md.
ACTIVATION_FACTOR = 4.0
PLACEMENTS = ("rows", "blocks")


@dataclass(frozen=True)
class Network:
    """Sizes the layout model needs, per 1-based layer l (lists are 0-based), all in bytes.

    param_bytes[l]      fp32 parameters of layer l+1
    head_param_bytes    head name -> per boundary b (after layer b+1) parameters of that head
    classifier_bytes    the network's own classifier
    output_bytes[l]     layer l+1's output activation for ONE sample (the edge after it carries batch x this)
    """

    param_bytes: list[float]
    head_param_bytes: dict[str, list[float]]
    classifier_bytes: float
    output_bytes: list[float]

    def block_params(self, first: int, last: int, head: str | None) -> float:
        total = sum(self.param_bytes[first - 1:last])
        return total + (self.classifier_bytes if head is None else self.head_param_bytes[head][last - 1])


@dataclass(frozen=True)
class Hardware:
    """G devices over `hosts` hosts (devices split evenly); inside a host `local_gbps`, between hosts `link_gbps`.

    Rates are Gbit/s (1e9 bits), one direction of a full-duplex link. memory_bytes: per device, or None.
    optimizer_states: fp32 tensors of optimizer state per parameter (SGD with momentum: 1; Adam: 2).
    """

    devices: int
    hosts: int = 1
    link_gbps: float | None = None
    local_gbps: float = LOCAL_GBPS
    memory_bytes: float | None = None
    optimizer_states: int = 1
    latency_s: float = HOP_LATENCY_S
    overlap: float = OVERLAP

    def __post_init__(self) -> None:
        if not isinstance(self.devices, int) or self.devices < 1:
            raise SedonaError(f"--devices must be a positive integer, got {self.devices!r}")
        if not isinstance(self.hosts, int) or not 1 <= self.hosts <= self.devices:
            raise SedonaError(f"--hosts must be an integer in 1..{self.devices} (the devices), got {self.hosts!r}")
        for name, v in (("--link-gbps", self.link_gbps), ("--local-gbps", self.local_gbps)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SedonaError(f"{name} must be a positive number of Gbit/s, got {v!r}")
        if self.hosts > 1 and self.link_gbps is None:
            raise SedonaError("several hosts need --link-gbps (the rate between them)")
        if self.memory_bytes is not None and not (math.isfinite(self.memory_bytes) and self.memory_bytes > 0):
            raise SedonaError(f"--memory-gib must be a positive number, got {self.memory_bytes / 2**30!r}")

    def rate(self, host_a: int, host_b: int) -> float:
        """Bytes/s between two devices' hosts."""
        gbps = self.local_gbps if host_a == host_b else self.link_gbps
        return float(gbps) * 1e9 / 8


@dataclass
class Stage:
    """One block of a layout, per replica and per step: seconds and bytes."""

    first: int
    last: int
    head: str | None
    compute_s: float          # the block's profiled step cost / R (each replica trains B / R samples)
    allreduce_s: float        # ring all-reduce of the block's gradients over its R replicas
    transfer_in_s: float      # its input activation shard arriving from the previous block
    param_bytes: float
    peak_bytes: float         # weights + gradients + optimizer state + saved activations (+ DDP buckets)


@dataclass
class Layout:
    """K blocks x R replicas, its placement, predicted step time (s), speedup and the fit in memory."""

    K: int
    R: int
    placement: str
    cut: str                  # "planned", "given" or "backprop"
    boundaries: tuple[int, ...]
    heads: tuple[str, ...]
    stages: list[Stage]
    stage_s: list[float]
    link_s: float             # bytes crossing the busiest host link direction per step / its rate
    step_s: float
    speedup: float
    fits: bool | None
    command: str = ""
    notes: list[str] = field(default_factory=list)
    schedule: str | None = None   # "gpipe" / "1f1b": pipelined backprop, a peer (planning.pipelined_backprop)
    microbatches: int = 0         # M of a pipelined layout

    @property
    def devices(self) -> int:
        return self.K * self.R

    @property
    def kind(self) -> str:
        """"DDP", "greedy", or the pipelined schedule's name ("GPipe", "1F1B")."""
        if self.schedule is not None:
            return {"gpipe": "GPipe", "1f1b": "1F1B"}[self.schedule]
        return "DDP" if self.K == 1 else "greedy"

    @property
    def name(self) -> str:
        """How tables name it: "DDP x R", "greedy K x R", "GPipe K stages, M micro-batches"."""
        if self.schedule is not None:
            return f"{self.kind} {self.K} stages, {self.microbatches} micro-batches"
        return f"DDP x {self.R}" if self.K == 1 else f"greedy {self.K} x {self.R}"

    @property
    def peak_bytes(self) -> float:
        return max(s.peak_bytes for s in self.stages)


def host_of(block: int, replica: int, K: int, R: int, placement: str, hw: Hardware) -> int:
    """Host of block `block`'s replica `replica` (0-based): devices in order, ceil(K R / hosts) per host.

    rows: replica rows are contiguous (row r = devices r K .. r K + K - 1), so a row stays on one host
    when it fits and activations stay local; blocks: a block's replicas are contiguous, so its
    all-reduce stays on one host when they fit and activations cross.
    """
    per = math.ceil(K * R / hw.hosts)
    index = replica * K + block if placement == "rows" else block * R + replica
    return index // per


def ring_allreduce_s(nbytes: float, hosts: Sequence[int], hw: Hardware) -> float:
    """Ring all-reduce of `nbytes` over ranks on `hosts` (in rank order): 2 (R-1)/R nbytes over the slowest
    hop of the ring, plus 2 (R-1) hop latencies (reduce-scatter then all-gather, R-1 steps each)."""
    R = len(hosts)
    if R <= 1:
        return 0.0
    slowest = min(hw.rate(hosts[i], hosts[(i + 1) % R]) for i in range(R))
    return 2.0 * (R - 1) / R * nbytes / slowest + 2 * (R - 1) * hw.latency_s


def layout(cm: CostModel, net: Network, hw: Hardware, batch: int, blocks: Sequence[tuple[int, int, str | None]],
           R: int, placement: str = "rows", cut: str = "planned") -> Layout:
    """Predict one layout: `blocks` (first, last, head) covering 1..L, each run as R replicas.

    Per block k (its replicas in parallel, per step of the global batch `batch`):
      compute_k   = block_cost_k / R                        (cost in seconds at `batch`; linear in batch)
      allreduce_k = ring_allreduce_s(params_k, hosts of its replicas)
      exposed_k   = max(0, allreduce_k - overlap x compute_k)      (hidden behind the backward)
      transfer_k  = output_bytes[first_k - 1] x batch / R / rate(host of k-1, host of k)
      stage_k     = max(compute_k + exposed_k, transfer_k)      (activations are sent asynchronously)
    The step is the slowest stage, or the busiest inter-host link direction if that is slower:
      link = max over ordered host pairs of (activation shards + ring all-reduce traffic crossing it) / rate.
    speedup = the one-device backprop step (cm.baseline_cost()) / step.
    """
    if cm.unit != "s":
        raise SedonaError("layouts need a cost model in seconds: a measured profile, "
                          "or multiply-adds with a device rate")
    if placement not in PLACEMENTS:
        raise SedonaError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    K = len(blocks)
    if R < 1 or K * R > hw.devices:
        raise SedonaError(f"{K} blocks x {R} replicas need {K * R} devices, there are {hw.devices}")
    if batch % R:
        raise SedonaError(f"batch {batch} does not split into {R} equal shards")
    shard = batch / R
    host = [[host_of(k, r, K, R, placement, hw) for r in range(R)] for k in range(K)]
    crossing: dict[tuple[int, int], float] = {}

    def cross(a: int, b: int, nbytes: float) -> None:
        if a != b:
            crossing[(a, b)] = crossing.get((a, b), 0.0) + nbytes

    stages, stage_s = [], []
    for k, (first, last, head) in enumerate(blocks):
        head = None if k == K - 1 else head
        params = net.block_params(first, last, head)
        compute = compute_cost(cm, first, last, head) / R
        allreduce = ring_allreduce_s(params, host[k], hw)
        transfer = 0.0
        if k > 0:
            edge = net.output_bytes[first - 2] * shard
            transfer = max(edge / hw.rate(host[k - 1][r], host[k][r]) for r in range(R))
            for r in range(R):
                cross(host[k - 1][r], host[k][r], edge)
        if R > 1:  # each ring hop carries 2 (R-1)/R of the buffer
            for r in range(R):
                cross(host[k][r], host[k][(r + 1) % R], 2.0 * (R - 1) / R * params)
        saved = sum(net.output_bytes[first - 1:last]) * shard * ACTIVATION_FACTOR
        state = params * (2 + hw.optimizer_states) + (params if R > 1 else 0.0)  # weights, grads, state, buckets
        edge_in = net.output_bytes[first - 2] * shard if k > 0 else 0.0
        stage = Stage(first, last, head, compute, allreduce, transfer, params, state + saved + edge_in)
        stages.append(stage)
        exposed = max(0.0, allreduce - hw.overlap * compute)
        stage_s.append(max(compute + exposed, transfer))
    link = max((b / (float(hw.link_gbps) * 1e9 / 8) for b in crossing.values()), default=0.0)
    step = max(max(stage_s), link)
    fits = None if hw.memory_bytes is None else all(s.peak_bytes <= hw.memory_bytes for s in stages)
    bounds = tuple(b[1] for b in blocks[:-1])
    heads = tuple(str(b[2]) for b in blocks[:-1])
    return Layout(K, R, placement, cut if K > 1 else "backprop", bounds, heads, stages, stage_s, link, step,
                  cm.baseline_cost() / step, fits)


def compute_cost(cm: CostModel, first: int, last: int, head: str | None) -> float:
    """A block's layers and head, without the cost model's own transfer term (layouts price transfers)."""
    total = 0.0
    for c in cm.layer_cost[first - 1:last]:
        total += c
    return total + (cm.classifier_cost if head is None else cm.head_at(head, last))


def placements_for(K: int, R: int, hw: Hardware) -> tuple[str, ...]:
    """Placements that differ for this layout: both only when several hosts and K, R > 1."""
    return PLACEMENTS if hw.hosts > 1 and K > 1 and R > 1 else ("rows",)


def rank(layouts: Sequence[Layout]) -> list[Layout]:
    """Fastest first; ties go to fewer devices, then fewer blocks (simpler), then this runtime's layouts
    before the pipelined peers (GPipe before 1F1B, fewer micro-batches first), then rows placement."""
    order = {None: 0, "gpipe": 1, "1f1b": 2}
    return sorted(layouts, key=lambda l: (l.fits is False, l.step_s, l.devices, l.K, order[l.schedule],
                                          l.microbatches, l.placement != "rows"))


def ddp_fastest_sentence(ranked: Sequence[Layout]) -> str | None:
    """The plain sentence when plain DDP is the best layout that fits; None otherwise."""
    fitting = [l for l in ranked if l.fits is not False]
    if not fitting or fitting[0].kind != "DDP":
        return None
    best = fitting[0]
    greedy = next((l for l in fitting if l.kind == "greedy"), None)
    reps = f"{greedy.R} replica{'s' if greedy.R > 1 else ''}" if greedy else ""
    tail = (f"; the best greedy layout ({greedy.K} blocks x {reps}) is predicted "
            f"{greedy.step_s / best.step_s:.2f}x slower") if greedy else ""
    return (f"Plain data parallel backprop (DDP over {best.R} devices) is the fastest choice here: predicted "
            f"{best.step_s * 1e3:.1f} ms per step, {best.speedup:.2f}x one device{tail}.")
