"""The benchmark's one-device profile, its predictions, and the planned (compute-balanced) decoupling."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sedona_runtime.decoupling import resolve_decoupling, save_decoupling
from sedona_runtime.heads import AUX_POOL
from sedona_runtime.models import ModelConfig, build_model
from sedona_runtime.planning.planner import make_plan, planned_decoupling
from sedona_runtime.planning.predict import predict, blocks_of
from sedona_runtime.planning.profile import from_profile
from sedona_runtime.planning.profiler import measure_profile

from speedup_lib.measure import BenchConfig

# Heads a decoupling of the benchmark may use; the profile times each at every boundary.
HEAD_POOL = (*AUX_POOL, "mlp_sr", "predsim")


def model_config(bc: BenchConfig) -> ModelConfig:
    stem = "cifar" if bc.image_size <= 32 else ("tiny_imagenet" if bc.image_size <= 64 else "imagenet")
    return ModelConfig(arch=bc.arch, width=bc.width, num_classes=bc.num_classes, stem=stem)


def profile_cost_model(bc: BenchConfig, cores: list[int]) -> tuple[Any, dict]:
    """Per-layer and per-head step times on one core set (or one GPU), and the cost model in seconds."""
    profile = _profile(bc, cores, bc.batch_size, HEAD_POOL)
    return from_profile(profile, arch=bc.arch), profile


def profile_microbatches(bc: BenchConfig, cores: list[int], counts: list[int]) -> dict[int, dict]:
    """The network's profile (no heads) at the micro-batch size B / M of each M in `counts`, on the same core
    set: GPipe / 1F1B stages' times (a stage's cost is not linear in its batch: planning.pipelined_backprop)."""
    return {m: _profile(bc, cores, bc.batch_size // m, ()) for m in sorted(set(counts))}


def profile_all(bc: BenchConfig, cores: list[int], counts: list[int], out: Path, say: Any):
    """The main profile and, right after it, those at GPipe / 1F1B's micro-batch sizes (the predictions compare
    them), with the machine's other load meanwhile (said, and DISTURBED when it was); each written to `out`.
    Returns (cost model, profile, {M: micro-batch profile}, load)."""
    from sedona_runtime.utils.io import atomic_write_json
    from speedup_lib.load import probed

    def both():
        say("profiling every layer and head on one device ...")
        main = profile_cost_model(bc, cores)
        if counts:
            say(f"profiling at the micro-batch sizes of GPipe / 1F1B "
                f"({', '.join(str(bc.batch_size // m) for m in counts)} samples) ...")
        return main, profile_microbatches(bc, cores, counts)

    ((cm, profile), micro), load = probed(both)
    say(f"    (other load {load.other_cores:.2f} cores"
        + (": DISTURBED, every prediction below is unreliable)" if load.disturbed else ")"))
    atomic_write_json(out / "profile.json", profile)
    for m, p in micro.items():
        atomic_write_json(out / f"profile_microbatch_{bc.batch_size // m}.json", p)
    return cm, profile, micro, load


def _profile(bc: BenchConfig, cores: list[int], batch: int, heads: tuple) -> dict:
    import psutil

    proc = psutil.Process()
    saved_affinity, saved_threads = proc.cpu_affinity(), torch.get_num_threads()
    device = "cuda" if bc.device == "cuda" else "cpu"
    try:
        if device == "cpu":
            proc.cpu_affinity(cores)  # the same core budget a block gets in the pipeline
            torch.set_num_threads(len(cores))
        return measure_profile(model_config(bc), (3, bc.image_size, bc.image_size), batch, heads,
                               device=device, warmup=2, iters=5, seed=bc.seed)
    finally:
        proc.cpu_affinity(saved_affinity)
        torch.set_num_threads(saved_threads)


def _num_layers(bc: BenchConfig) -> int:
    with torch.device("meta"):
        return build_model(model_config(bc)).num_layers


def resolve(bc: BenchConfig, spec: str):
    """A decoupling spec of the benchmark's network (shipped ones of another arch are retargeted)."""
    return resolve_decoupling(spec, bc.arch, _num_layers(bc), allow_retarget=True)


def planned_spec(bc: BenchConfig, cm: Any, out: Path) -> tuple[str, str]:
    """Write the fastest K-block cut under the measured profile; (its path, the heads it was planned with).

    Heads: the shipped search's (argmax beta) when the arch has one, else DGL's, the heads of the dgl:K
    row it is compared against, so the two rows differ only in where they cut.
    """
    L = _num_layers(bc)
    try:
        base, heads = resolve_decoupling(f"sedona:{bc.blocks}", bc.arch, L), "SEDONA's heads"
    except Exception:  # no shipped search for this arch: plan DGL's blocks on compute alone
        base = resolve_decoupling(f"dgl:{bc.blocks}", bc.arch, L)
        heads = f"{base.blocks[0].head} heads, as dgl:{bc.blocks}"
    plan = make_plan(base, cm, bc.blocks)
    dec = planned_decoupling(base, plan, plan.fastest, note=f"speedup benchmark: fastest cut ({heads})")
    path = out / f"planned_{bc.arch}_k{bc.blocks}.json"
    save_decoupling(dec, path)
    return str(path), heads


def predicted(bc: BenchConfig, cm: Any, spec: str) -> dict:
    """The speedup K devices would give, predicted from the one-device profile (PREDICTED, not measured)."""
    dec = resolve(bc, spec)
    pred = predict(cm, blocks_of(dec))
    return {"speedup": pred.speedup, "blocks": [[b.first, b.last, b.head] for b in dec.blocks],
            "breakdown": pred.to_dict()}


def layout_hardware(devices: int, link_gbps: float | None = None, hosts: int | None = None):
    """The planner's Hardware for the benchmark: `devices` single core sets, one host unless a link is given."""
    from sedona_runtime.planning.layouts import Hardware

    return Hardware(devices=devices, hosts=hosts or (2 if link_gbps else 1), link_gbps=link_gbps)


def network(bc: BenchConfig, cm: Any):
    """Parameter and activation bytes of the benchmark's network (for the layout planner)."""
    from sedona_runtime.planning.devices import network_sizes

    return network_sizes(model_config(bc), (3, bc.image_size, bc.image_size), sorted(cm.head_cost))


def predicted_layouts(bc: BenchConfig, cm: Any, devices: int, link_gbps: float | None = None,
                      hosts: int | None = None):
    """Every K x R layout on `devices` from the one-device profile, ranked (PREDICTED)."""
    from sedona_runtime.planning.devices import plan_devices

    L = _num_layers(bc)
    try:
        base, name = resolve_decoupling("sedona:2", bc.arch, L), "sedona:2"
    except Exception:  # no shipped search for this arch: DGL's heads
        base, name = resolve_decoupling("dgl:2", bc.arch, L), "dgl:2"
    return plan_devices(base, cm, network(bc, cm), layout_hardware(devices, link_gbps, hosts), bc.batch_size,
                        base_name=name)


def predicted_step(bc: BenchConfig, cm: Any, blocks: list, replicas: int, devices: int,
                   link_gbps: float | None = None, hosts: int | None = None, placement: str = "rows") -> float:
    """Predicted seconds per step of `blocks` [(first, last, head)] x `replicas` (the layout model)."""
    from sedona_runtime.planning.layouts import layout

    hw = layout_hardware(devices, link_gbps, hosts)
    return layout(cm, network(bc, cm), hw, bc.batch_size, [tuple(b) for b in blocks], replicas, placement).step_s


def peer_boundaries(bc: BenchConfig, cm: Any, planned: list[int], devices: int) -> list[int]:
    """The cut the GPipe / 1F1B rows run: the planned greedy cut when it has G = `devices` stages, else the
    balanced G-stage cut (planning.pipelined_backprop.balanced_boundaries: no heads, the classifier last)."""
    from sedona_runtime.planning.pipelined_backprop import balanced_boundaries

    return list(planned) if len(planned) + 1 == devices else list(balanced_boundaries(cm, devices))


def predicted_pipelined(bc: BenchConfig, cm: Any, micro_profile: dict, boundaries: list[int], microbatches: int,
                        schedule: str):
    """GPipe / 1F1B over the stages cut after `boundaries`, M micro-batches, one core set (or GPU) each, from
    the profile taken at the micro-batch size B / M (PREDICTED; planning.pipelined_backprop, with its measured
    in-pipeline slowdown): its PipelinedStep."""
    from sedona_runtime.planning.pipelined_backprop import (message_times, pipelined_step,
                                                            stage_times_from_profile)

    stages = stage_times_from_profile(micro_profile, boundaries, microbatches, scale=1.0)
    hw = layout_hardware(len(boundaries) + 1)
    msgs = message_times(network(bc, cm), hw, boundaries, bc.batch_size, microbatches)
    return pipelined_step(stages, microbatches, schedule, msgs)


def pipelined_record(p: Any) -> dict:
    """One GPipe / 1F1B prediction as JSON: its step, per-stage busy and bubble seconds, messages, in flight."""
    import dataclasses

    return {"schedule": p.schedule, "microbatches": p.microbatches, "step_s": p.step_s, "busy_s": p.busy_s,
            "bubble_s": p.bubble_s, "message_s": list(p.message_s), "in_flight": p.in_flight,
            "stages": [dataclasses.asdict(s) for s in p.stages]}
