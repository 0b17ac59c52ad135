"""Every K x R layout of one network on G devices, ranked: planned cuts per K, the given decoupling, plain DDP."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from sedona_runtime.decoupling.schema import Decoupling
from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.layouts import Hardware, Layout, Network, layout, placements_for, rank
from sedona_runtime.planning.planner import make_plan
from sedona_runtime.planning.predict import blocks_of

BYTES_PER_PARAM = 4  # fp32 weights, gradients and optimizer state


def network_sizes(model_cfg: Any, input_shape: Sequence[int], heads: Sequence[str]) -> Network:
    """Parameter and per-sample activation bytes of `model_cfg` (counted on the meta device, no weights)."""
    from sedona_runtime.analysis.costs import model_costs

    costs = model_costs(model_cfg, tuple(int(s) for s in input_shape), heads=list(heads))
    layers = costs["layers"]
    return Network(
        param_bytes=[float(l["params"] * BYTES_PER_PARAM) for l in layers],
        head_param_bytes={h: [float(l["heads"][h]["params"] * BYTES_PER_PARAM) for l in layers[:-1]] for h in heads},
        classifier_bytes=float(costs["classifier"]["params"] * BYTES_PER_PARAM),
        output_bytes=[float(l["channels"] * l["size"] ** 2 * BYTES_PER_PARAM) for l in layers],
    )


@dataclass
class DevicePlan:
    """The ranked layouts and what they were computed from."""

    hardware: Hardware
    batch_size: int
    ranked: list[Layout]
    skipped: list[str]      # layouts left out, with why (a batch that does not split)


def command(lay: Layout, base: str, given: str | None, plan_options: str = "", min_speedup: float | None = None) -> str:
    """The command line that runs `lay` (`python launch/greedy.py`; a planned cut is written by the plan CLI
    first, with `plan_options`: the network and cost-model options this plan was made with, and `--min-speedup`
    just under the planned cut's predicted speedup, so it writes the fastest cut this table ranked); a pipelined
    peer is not run by this runtime: the benchmark that measures it."""
    if lay.schedule is not None:
        return (f"peer, not run by this runtime (torch.distributed.pipelining); measured by: python "
                f"benchmarks/speedup.py --blocks {lay.K} --peers {lay.schedule} --microbatches {lay.microbatches}")
    if lay.K == 1:
        return f"python launch/greedy.py --blocks 1 --replicas {lay.R} --decoupling backprop"
    reps = f" --replicas {lay.R}" if lay.R > 1 else ""
    place = f" --replica-placement {lay.placement}" if lay.R > 1 and lay.placement != "rows" else ""
    if lay.cut == "given" and given is not None:
        return f"python launch/greedy.py --blocks {lay.K}{reps}{place} --decoupling {given}"
    out = f"planned_k{lay.K}.json"
    target = "" if min_speedup is None else f" --min-speedup {math.floor(min_speedup * 1000) / 1000:g}"
    opts = f" {plan_options}" if plan_options else ""
    return (f"python -m sedona_runtime.plan --decoupling {base}{opts} --blocks {lay.K}{target} --out {out} && "
            f"python launch/greedy.py --blocks {lay.K}{reps}{place} --decoupling {out}")


def plan_devices(base: Decoupling, cm: CostModel, net: Network, hw: Hardware, batch_size: int, *,
                 base_name: str, given: Decoupling | None = None, given_name: str | None = None,
                 max_blocks: int | None = None, pipelined: bool = True, plan_options: str = "") -> DevicePlan:
    """All layouts with K * R <= hw.devices: K = 1 (DDP), and for K >= 2 the fastest cut planned from
    `base`'s alpha (make_plan) and `given` at its own K; every placement that differs across hosts. With
    `pipelined`, the peers too: GPipe and 1F1B over K = 2..G stages of the balanced cut (no heads), each at
    its fastest M of planning.pipelined_backprop.microbatch_counts."""
    G = hw.devices
    top = min(G, cm.num_layers, max_blocks or G)
    candidates: list[tuple[int, list, str]] = []
    fastest: dict[int, float] = {}  # K -> the planned cut's predicted speedup (its command asks for it)
    for K in range(1, top + 1):
        if K == 1:
            candidates.append((1, [(1, cm.num_layers, None)], "backprop"))
            continue
        plan = make_plan(base, cm, K)
        heads = plan.heads_of(plan.fastest)
        fastest[K] = plan.fastest.speedup
        bounds = [0, *plan.fastest.boundaries, cm.num_layers]
        blocks = [(bounds[i] + 1, bounds[i + 1], heads[i] if i < K - 1 else None) for i in range(K)]
        candidates.append((K, blocks, "planned"))
    if given is not None and 2 <= given.K <= G:
        candidates.append((given.K, blocks_of(given), "given"))
    layouts: list[Layout] = []
    skipped: list[str] = []
    for K, blocks, cut in candidates:
        for R in range(1, G // K + 1):
            if batch_size % R:
                skipped.append(f"{K} x {R}: batch {batch_size} does not split into {R} shards")
                continue
            for placement in placements_for(K, R, hw):
                lay = layout(cm, net, hw, batch_size, blocks, R, placement, cut)
                lay.command = command(lay, base_name, given_name, plan_options,
                                      fastest.get(K) if cut == "planned" else None)
                layouts.append(lay)
    if pipelined:
        layouts += pipelined_layouts(cm, net, hw, batch_size, range(2, top + 1))
    return DevicePlan(hw, batch_size, rank(layouts), skipped)


def pipelined_layouts(cm: CostModel, net: Network, hw: Hardware, batch_size: int, stages: range) -> list[Layout]:
    """GPipe and 1F1B at each K of `stages` on the balanced cut: the fastest M of each (fewest on a tie)."""
    from sedona_runtime.planning.pipelined_backprop import (SCHEDULES, balanced_boundaries, microbatch_counts,
                                                            pipelined_layout)

    out = []
    for K in stages:
        bounds = balanced_boundaries(cm, K)
        for schedule in SCHEDULES:
            options = [pipelined_layout(cm, net, hw, batch_size, bounds, M, schedule)
                       for M in microbatch_counts(K, batch_size)]
            if options:
                best = min(options, key=lambda l: (l.step_s, l.microbatches))
                best.command = command(best, "", None)
                out.append(best)
    return out


def layout_record(lay: Layout) -> dict[str, Any]:
    """One ranked layout as JSON."""
    return {"kind": lay.kind, "schedule": lay.schedule, "microbatches": lay.microbatches,
            "K": lay.K, "R": lay.R, "devices": lay.devices, "placement": lay.placement,
            "cut": lay.cut, "boundaries": list(lay.boundaries), "heads": list(lay.heads),
            "step_s": lay.step_s, "speedup": lay.speedup, "link_s": lay.link_s, "stage_s": lay.stage_s,
            "peak_bytes": lay.peak_bytes, "fits": lay.fits, "command": lay.command,
            "stages": [s.__dict__ for s in lay.stages]}
