"""Pipelined backprop (GPipe, 1F1B) over K contiguous stages with M micro-batches: step time and memory.

The peers' model (pure arithmetic, no torch.distributed; docs/DESIGN.md "The layout planner"): what
torch.distributed.pipelining's ScheduleGPipe and Schedule1F1B cost for one network cut into K stages, one
device each, each step's batch of B samples split into M micro-batches of B / M. Unlike the greedy blocks,
every stage waits for the gradient of its output from the next stage (the backward messages), and the K - 1
slots the pipeline takes to fill and drain are idle: the bubble.

Per micro-batch, stage k (0-based) spends f_k in its forward (the loss too on the last stage), b_k in its
backward (its input's gradient too, except on the first stage), and each edge e (after stage e) carries the
stage's output activation forward and its gradient backward, m_e seconds each (bytes / rate + one hop's
latency), each way on its own direction of the link and asynchronously (isend/irecv) as the schedules do.
A stage runs its operations in the schedule's order (GPipe: F0..F(M-1), then B0..B(M-1); 1F1B: min(M, K - k)
forwards, then one backward and one forward in turn, then the rest of the backwards), each starting when
the stage is free and its input has arrived, then its optimizer step once per step. `simulate` plays that
out for three steps and `pipelined_step` reports the last one's period: exact under these assumptions,
and for equal stages and free messages it is the textbook (M + K - 1) (f + b): with unequal ones GPipe
pays sum_k (f_k + b_k) + (M - 1) (max_k f_k + max_k b_k), 1F1B about sum_k (f_k + b_k) + (M - 1) max_k (f_k +
b_k) (tests/planning/test_pipelined_backprop.py checks these by hand). 1F1B holds min(M, K - k) micro-batches'
activations on stage k, GPipe all M: the same bubble, less memory.

Micro-batch cost, measured on the development machine's CPU (one core per stage, ResNet-101 x0.25, 32 px,
batch 32, the planned cut after layer 9; thread CPU time, which the machine's other load disturbs far less
than wall time). Two effects, both kept:
- A stage's cost is not linear in the micro-batch: per sample, layers 1-9 cost 0.72-0.79x (micro-batches of
  8) and 0.82-0.94x (of 4) of their batch-32 cost, layers 10-33 1.07-1.13x and 1.37-1.45x (small maps:
  per-call overheads win over the work; two rounds). So the speedup benchmark profiles the network at the
  micro-batch size itself and passes those times (`stage_times_from_profile(..., scale=1)`); the planner,
  with one profile, scales linearly (`stage_times`).
- Inside torch.distributed.pipelining a rank spent more CPU on its forwards and backwards than its stage's
  micro-batch profile: 1.05x to 1.39x over 14 rank-runs (GPipe and 1F1B, M = 4 and 8, two rounds), median
  1.20 (the schedule's and autograd's per-chunk work, the p2p copies, caches cooled by the other
  micro-batches). `PIPELINED_SLOWDOWN` charges that median to every forward and backward (not the
  optimizer step); the spread is this model's main uncertainty (about +-15%).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sedona_runtime.planning.cost_model import BACKWARD_FACTOR, CostModel
from sedona_runtime.utils.errors import SedonaError

SCHEDULES = ("gpipe", "1f1b")
PIPELINED_SLOWDOWN = 1.2  # in-pipeline time over the micro-batch profile: the median measured (docstring)
# The smallest micro-batch the planner considers (samples): below it linear scaling is too optimistic
# (docstring), and BatchNorm normalises each micro-batch alone.
MIN_MICROBATCH = 4


@dataclass(frozen=True)
class StageTimes:
    """Seconds of one stage for ONE micro-batch: forward, backward; its optimizer step (once per step)."""

    forward_s: float
    backward_s: float
    optimizer_s: float = 0.0


@dataclass
class PipelinedStep:
    """One schedule's predicted step: its period (s), each stage's busy time and in-flight micro-batches."""

    schedule: str
    microbatches: int
    stages: tuple[StageTimes, ...]
    message_s: tuple[float, ...]   # per edge: one micro-batch's activation (or its gradient) one way
    step_s: float                  # seconds per step in steady state (the period of the repeated step)
    busy_s: list[float]            # per stage: M (f + b) + optimizer
    in_flight: list[int]           # per stage: micro-batches whose saved activations it holds at its peak

    @property
    def K(self) -> int:  # noqa: N802 - the paper's name
        return len(self.stages)

    @property
    def bubble_s(self) -> list[float]:
        """Per stage: the step's idle seconds (fill, drain and waiting for the slowest stage)."""
        return [self.step_s - b for b in self.busy_s]


def schedule_order(schedule: str, stage: int, K: int, M: int) -> list[tuple[str, int]]:  # noqa: N803
    """Operations ("F" or "B", micro-batch) of 0-based `stage` in one step, in torch's order."""
    if schedule not in SCHEDULES:
        raise SedonaError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "gpipe":
        return [("F", m) for m in range(M)] + [("B", m) for m in range(M)]
    warm = min(M, K - stage)  # Schedule1F1B: the first stage K forwards, the last one
    order = [("F", m) for m in range(warm)]
    nxt = warm
    for m in range(M):
        order.append(("B", m))
        if nxt < M:
            order.append(("F", nxt))
            nxt += 1
    return order


def in_flight(schedule: str, stage: int, K: int, M: int) -> int:  # noqa: N803
    """Micro-batches whose activations `stage` holds at its peak: M (GPipe), min(M, K - stage) (1F1B)."""
    live = peak = 0
    for kind, _ in schedule_order(schedule, stage, K, M):
        live += 1 if kind == "F" else -1
        peak = max(peak, live)
    return peak


def simulate(stages: Sequence[StageTimes], M: int, schedule: str, message_s: Sequence[float],  # noqa: N803
             steps: int = 3) -> list[list[float]]:
    """End time of every stage's step 0..steps-1 (after its optimizer step), the schedule played out.

    An operation starts when its stage is free and its input is there: F of micro-batch m on stage k > 0 when
    stage k-1's F(m) has ended and its activation crossed edge k-1; B(m) on the last stage after its own F(m),
    elsewhere when stage k+1's B(m) has ended and the gradient crossed back. A message starts when its
    operation ends and its direction of the edge is free (messages of one direction queue in order).
    """
    K = len(stages)
    if K < 1 or M < 1:
        raise SedonaError(f"a pipeline needs at least one stage and one micro-batch (got K={K}, M={M})")
    if len(message_s) != K - 1:
        raise SedonaError(f"{K} stages have {K - 1} edges, got {len(message_s)} message times")
    orders = [[(kind, m, s) for s in range(steps) for kind, m in [*schedule_order(schedule, k, K, M), ("O", 0)]]
              for k in range(K)]
    done: dict[tuple[int, str, int, int], float] = {}
    arrive: dict[tuple[int, str, int, int], float] = {}
    link = {(e, d): 0.0 for e in range(K - 1) for d in "FB"}
    free, pos = [0.0] * K, [0] * K
    ends: list[list[float]] = [[] for _ in range(K)]
    while any(pos[k] < len(orders[k]) for k in range(K)):
        moved = False
        for k in range(K):
            while pos[k] < len(orders[k]):
                kind, m, s = orders[k][pos[k]]
                if kind == "O":
                    ready: float | None = 0.0
                elif kind == "F":
                    ready = 0.0 if k == 0 else arrive.get((k, "F", m, s))
                else:
                    ready = done.get((k, "F", m, s)) if k == K - 1 else arrive.get((k, "B", m, s))
                if ready is None:
                    break
                st = stages[k]
                cost = st.forward_s if kind == "F" else st.backward_s if kind == "B" else st.optimizer_s
                end = max(free[k], ready) + cost
                free[k] = done[(k, kind, m, s)] = end
                pos[k] += 1
                moved = True
                if kind == "O":
                    ends[k].append(end)
                elif kind == "F" and k < K - 1:
                    link[(k, "F")] = arrive[(k + 1, "F", m, s)] = max(end, link[(k, "F")]) + message_s[k]
                elif kind == "B" and k > 0:
                    link[(k - 1, "B")] = arrive[(k - 1, "B", m, s)] = max(end, link[(k - 1, "B")]) + message_s[k - 1]
        if not moved:  # cannot happen for the two schedules' orders; a guard against an endless loop
            raise SedonaError(f"{schedule}: the schedule cannot proceed (K={K}, M={M})")
    return ends


def pipelined_step(stages: Sequence[StageTimes], M: int, schedule: str,  # noqa: N803
                   message_s: Sequence[float] | None = None) -> PipelinedStep:
    """The steady-state step of `schedule` over `stages` (per-micro-batch times) with M micro-batches."""
    K = len(stages)
    if not isinstance(M, int) or M < 1:
        raise SedonaError(f"micro-batches must be a positive integer, got {M!r}")
    if schedule == "1f1b" and M < K:
        raise SedonaError(f"1F1B needs at least as many micro-batches as stages (M={M} < K={K})")
    msgs = tuple(float(x) for x in (message_s if message_s is not None else [0.0] * (K - 1)))
    ends = simulate(stages, M, schedule, msgs)
    step = max(e[-1] - e[-2] for e in ends)
    busy = [M * (s.forward_s + s.backward_s) + s.optimizer_s for s in stages]
    return PipelinedStep(schedule, M, tuple(stages), msgs, step, busy,
                         [in_flight(schedule, k, K, M) for k in range(K)])


def _check_cuts(boundaries: Sequence[int], L: int, M: int) -> list[int]:  # noqa: N803
    cuts = [0, *boundaries, L]
    if any(b <= a for a, b in zip(cuts, cuts[1:])):
        raise SedonaError(f"stage boundaries {list(boundaries)} must increase strictly within 1..{L - 1}")
    if not isinstance(M, int) or M < 1:
        raise SedonaError(f"micro-batches must be a positive integer, got {M!r}")
    return cuts


def stage_times(cm: CostModel, boundaries: Sequence[int], M: int,  # noqa: N803
                slowdown: float = PIPELINED_SLOWDOWN) -> list[StageTimes]:
    """Per-micro-batch times of the stages cut after 1-based `boundaries`, from a step-level cost model.

    Stage k = layers cuts[k]+1..cuts[k+1] (no head: pipelined backprop trains through the classifier, on the
    last stage); its cost at the cost model's batch / M x `slowdown`, split forward : backward =
    1 : BACKWARD_FACTOR (exact for multiply-add costs; a profile's optimizer time rides along in both).
    """
    if cm.unit != "s":
        raise SedonaError("pipelined stages need a cost model in seconds: a measured profile, "
                          "or multiply-adds with a device rate")
    cuts = _check_cuts(boundaries, cm.num_layers, M)
    out = []
    for k in range(len(cuts) - 1):
        total = sum(cm.layer_cost[cuts[k]:cuts[k + 1]]) + (cm.classifier_cost if k == len(cuts) - 2 else 0.0)
        micro = total / M * slowdown
        out.append(StageTimes(micro / (1.0 + BACKWARD_FACTOR), micro * BACKWARD_FACTOR / (1.0 + BACKWARD_FACTOR)))
    return out


def stage_times_from_profile(profile: Mapping[str, Any], boundaries: Sequence[int], M: int,  # noqa: N803
                             slowdown: float = PIPELINED_SLOWDOWN, scale: float | None = None) -> list[StageTimes]:
    """The same from a measured profile (planning.profile.PROFILE_SCHEMA): its own forward / backward split
    and the optimizer step once per step. Times are divided by M (`scale` overrides that factor 1 / M: 1
    for a profile measured at the micro-batch size itself) and multiplied by `slowdown`."""
    layers = sorted(profile["layers"], key=lambda e: e["index"])
    cuts = _check_cuts(boundaries, len(layers), M)
    factor = (1.0 / M if scale is None else scale) * slowdown
    out = []
    for k in range(len(cuts) - 1):
        parts = layers[cuts[k]:cuts[k + 1]] + ([profile["classifier"]] if k == len(cuts) - 2 else [])
        out.append(StageTimes(sum(p["fwd_s"] for p in parts) * factor, sum(p["bwd_s"] for p in parts) * factor,
                              sum(p.get("opt_s", 0.0) for p in parts)))
    return out


def balanced_boundaries(cm: CostModel, K: int) -> tuple[int, ...]:  # noqa: N803
    """The K-stage contiguous cut (no heads, the classifier on the last stage) whose slowest stage is the
    fastest: the classic linear-partition recursion, exact, O(K L^2). Ties go to the earliest cut."""
    L = cm.num_layers
    if not 1 <= K <= L:
        raise SedonaError(f"{K} stages of {L} layers: need 1 <= K <= {L}")
    cost = [*cm.layer_cost[:-1], cm.layer_cost[-1] + cm.classifier_cost]
    prefix = [0.0]
    for c in cost:
        prefix.append(prefix[-1] + c)
    # best[j][i]: the slowest stage of the best cut of layers 1..i into j stages; back[j][i] its last cut
    best = [[math.inf] * (L + 1) for _ in range(K + 1)]
    back = [[0] * (L + 1) for _ in range(K + 1)]
    best[0][0] = 0.0
    for j in range(1, K + 1):
        for i in range(j, L - (K - j) + 1):
            for c in range(j - 1, i):
                v = max(best[j - 1][c], prefix[i] - prefix[c])
                if v < best[j][i]:
                    best[j][i], back[j][i] = v, c
    cuts, i = [], L
    for j in range(K, 0, -1):
        i = back[j][i]
        cuts.append(i)
    return tuple(sorted(cuts)[1:])


def message_times(net: Any, hw: Any, boundaries: Sequence[int], batch: int, M: int,  # noqa: N803
                  hosts: Sequence[int] | None = None) -> list[float]:
    """Per edge: one micro-batch's activation (= its gradient's bytes) over the edge, in seconds.

    net.output_bytes[b - 1] x batch / M bytes over hw.rate between the two stages' hosts (all on host 0
    unless `hosts` gives each stage's), plus one hop's latency."""
    hosts = list(hosts) if hosts is not None else [0] * (len(boundaries) + 1)
    return [net.output_bytes[b - 1] * batch / M / hw.rate(hosts[e], hosts[e + 1]) + hw.latency_s
            for e, b in enumerate(boundaries)]


def pipelined_layout(cm: CostModel, net: Any, hw: Any, batch: int, boundaries: Sequence[int], M: int,  # noqa: N803
                     schedule: str, slowdown: float = PIPELINED_SLOWDOWN) -> Any:
    """The planner's Layout of `schedule` over K = len(boundaries) + 1 stages, one device each (R = 1).

    Step: pipelined_step of stage_times(cm, ...) with message_times between the stages' hosts (devices in
    order, as layouts.host_of places a replica row). Memory per stage: weights + gradients + optimizer
    state + in_flight micro-batches' saved activations (ACTIVATION_FACTOR x each layer's output) and
    inputs. link_s: the busiest host link direction's bytes per step (2 M messages cross it, one each way
    per micro-batch) over its rate."""
    from sedona_runtime.planning.layouts import ACTIVATION_FACTOR, Layout, Stage, host_of

    K = len(boundaries) + 1
    if K > hw.devices:
        raise SedonaError(f"{K} pipeline stages need {K} devices, there are {hw.devices}")
    if batch % M:
        raise SedonaError(f"batch {batch} does not split into {M} micro-batches")
    stages = stage_times(cm, boundaries, M, slowdown)
    hosts = [host_of(k, 0, K, 1, "rows", hw) for k in range(K)]
    msgs = message_times(net, hw, boundaries, batch, M, hosts)
    step = pipelined_step(stages, M, schedule, msgs)
    cuts = [0, *boundaries, cm.num_layers]
    micro = batch / M
    out, crossing = [], [0.0]
    for k in range(K):
        first, last = cuts[k] + 1, cuts[k + 1]
        params = net.block_params(first, last, None) if k == K - 1 else sum(net.param_bytes[first - 1:last])
        edge_in = net.output_bytes[first - 2] * micro if k > 0 else 0.0
        saved = sum(net.output_bytes[first - 1:last]) * micro * ACTIVATION_FACTOR
        peak = params * (2 + hw.optimizer_states) + step.in_flight[k] * (saved + edge_in)
        out.append(Stage(first, last, None, step.busy_s[k], 0.0, M * (msgs[k - 1] if k > 0 else 0.0), params, peak))
        if k > 0 and hosts[k - 1] != hosts[k]:
            crossing.append(M * net.output_bytes[first - 2] * micro / (float(hw.link_gbps) * 1e9 / 8))
    fits = None if hw.memory_bytes is None else all(s.peak_bytes <= hw.memory_bytes for s in out)
    return Layout(K, 1, "rows", "balanced", tuple(boundaries), (), out, step.busy_s, max(crossing), step.step_s,
                  cm.baseline_cost() / step.step_s, fits, schedule=schedule, microbatches=M)


def microbatch_counts(K: int, batch: int) -> list[int]:  # noqa: N803
    """The M the planner tries for K stages: the smallest divisors of the batch from K, 2K and 4K up (the
    bubble (K-1)/(M+K-1) is then at most 43%, 27%, 16%), keeping micro-batches of at least
    MIN_MICROBATCH samples (below that the linear scaling is too optimistic: the module docstring)."""
    counts: list[int] = []
    for target in (K, 2 * K, 4 * K):
        m = next((d for d in range(target, batch // MIN_MICROBATCH + 1) if batch % d == 0), None)
        if m is not None and m not in counts:
            counts.append(m)
    return counts
