"""Load what a planning run needs: the decoupling (file, shipped name or spec) and its cost model."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sedona_runtime.decoupling import Decoupling, load_decoupling, resolve_decoupling
from sedona_runtime.planning.cost_model import CostModel, from_flops, transfer_costs
from sedona_runtime.planning.profile import from_profile
from sedona_runtime.utils.errors import SedonaError


def model_num_layers(arch: str, stem: str, num_classes: int, width: float) -> int:
    """Number of layers of `arch`, from a network built on the meta device (no memory, no compute)."""
    import torch

    from sedona_runtime.models.registry import ModelConfig, build_model, validate_model_config

    cfg = ModelConfig(arch=arch, num_classes=num_classes, stem=stem, width=width)
    validate_model_config(cfg)
    with torch.device("meta"):
        return build_model(cfg).num_layers


def load_for_planning(spec: str, arch: str | None, stem: str, num_classes: int, width: float) -> Decoupling:
    """A decoupling file or shipped name; with `arch`, also a spec such as dgl:4 or sedona:4."""
    if arch is None:
        return load_decoupling(spec)
    return resolve_decoupling(spec, arch, model_num_layers(arch, stem, num_classes, width))


def heads_needed(dec: Decoupling, head: str | None) -> list[str]:
    """Heads the planner may place: the search's pool, the decoupling's own heads and `head`."""
    names: list[str] = []
    for h in [*(dec.head_pool or []), *dec.heads, *([head] if head else [])]:
        if h not in names:
            names.append(h)
    return names


def load_cost_model(dec: Decoupling, *, profile: str | None, stem: str, num_classes: int,
                    input_shape: Sequence[int], width: float = 1.0, batch_size: int = 1,
                    head: str | None = None, bandwidth: float | None = None,
                    device_rate: float | None = None, measure_on: str | None = None,
                    save_profile: str | None = None, warmup: int = 2, iters: int = 5) -> CostModel:
    """The cost model for `dec`'s network: a profile file, a profile measured now on `measure_on`
    (saved to `save_profile` if given), or else multiply-add counts."""
    if measure_on is not None:
        if profile is not None:
            raise SedonaError("give either a profile file or a device to measure one on, not both")
        from sedona_runtime.models.registry import ModelConfig
        from sedona_runtime.planning.profiler import measure_profile
        from sedona_runtime.utils.io import atomic_write_json

        cfg = ModelConfig(arch=dec.arch, num_classes=num_classes, stem=stem, width=width)
        measured = measure_profile(cfg, input_shape, batch_size, heads_needed(dec, head), device=measure_on,
                                  warmup=warmup, iters=iters)
        if bandwidth is not None:
            measured["transfer_bytes_per_s"] = bandwidth
        if save_profile:
            atomic_write_json(save_profile, measured)
        return from_profile(measured, arch=dec.arch)
    if save_profile:
        raise SedonaError("--save-profile needs --measure DEVICE")
    if profile is not None:
        if device_rate is not None:
            raise SedonaError("--device-rate applies to multiply-add costs, "
                              "not to a measured profile (already seconds)")
        cm = from_profile(profile, arch=dec.arch)
        if cm.num_layers != dec.num_layers:
            raise SedonaError(f"{profile}: profiles {cm.num_layers} layers, {dec.arch} has {dec.num_layers}")
        if bandwidth is not None:
            if cm.boundary_bytes is None:
                raise SedonaError(f"{profile}: a bandwidth needs 'boundary_bytes' in the profile")
            cm.transfer_bytes_per_s = bandwidth
            cm.transfer_cost = transfer_costs(cm.boundary_bytes, bandwidth, cm.num_layers)
        return cm
    from sedona_runtime.models.registry import ModelConfig

    cfg = ModelConfig(arch=dec.arch, num_classes=num_classes, stem=stem, width=width)
    cm = from_flops(cfg, input_shape, batch_size, heads_needed(dec, head),
                    transfer_bytes_per_s=bandwidth, device_macs_per_s=device_rate)
    if cm.num_layers != dec.num_layers:
        raise SedonaError(f"{dec.origin or dec.arch}: {dec.num_layers} layers, but {dec.arch} has {cm.num_layers}")
    return cm


def plan_record_path(out: str | Path) -> Path:
    """Where the plan record of a planned decoupling file goes: planned.json -> planned.plan.json."""
    return Path(out).with_suffix(".plan.json")
