"""Measured per-layer profiles: the JSON schema and the cost model (in seconds) built from one."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from sedona_runtime.planning.cost_model import CostModel, read_json, transfer_costs
from sedona_runtime.utils.errors import SedonaError

PROFILE_SCHEMA = """\
profile JSON (all times in seconds for one training step of one batch on one device):
{
  "device": "NVIDIA H100 80GB HBM3",          # free text, recorded
  "arch": "resnet101",                         # optional, checked against the decoupling
  "batch_size": 64, "input_shape": [3, 224, 224],   # optional, recorded
  "layers": [{"index": 1, "fwd_s": 0.0012, "bwd_s": 0.0025, "opt_s": 0.0001}, ...],
                                               # every layer 1..L once; opt_s optional (0)
  "classifier": {"fwd_s": ..., "bwd_s": ..., "opt_s": ...},   # the network's own head
  "heads": {"aux4": [{"after": 1, "fwd_s": ..., "bwd_s": ..., "opt_s": ...}, ...], ...},
                                               # a head attached after layer `after` (1..L-1);
                                               # a boundary left out cannot carry that head
  "boundary_bytes": [ ... L-1 numbers ... ],   # optional: activation bytes per batch leaving
                                               # layer l (l = 1..L-1)
  "transfer_bytes_per_s": 1.2e10,              # optional: link bandwidth; with boundary_bytes,
                                               # each block but the first pays bytes/bandwidth
  "torch": "2.x", "warmup": 2, "iters": 5      # optional, recorded by measure_profile, ignored
}
Each time is the step's share of that piece: fwd_s its forward, bwd_s its backward (for a head:
from its loss into its input), opt_s its optimizer step. sedona_runtime.planning.profiler writes
this format."""


def from_profile(profile: Mapping[str, Any] | str | Path, *, arch: str | None = None) -> CostModel:
    """A cost model in seconds from a measured per-layer profile (schema: PROFILE_SCHEMA)."""
    where = "profile"
    if isinstance(profile, (str, Path)):
        where = str(profile)
        profile = read_json(profile)
    if not isinstance(profile, Mapping):
        raise SedonaError(f"{where}: expected a JSON object")
    layers = profile.get("layers")
    if not isinstance(layers, list) or not layers:
        raise SedonaError(f"{where}: 'layers' must be a non-empty list of {{index, fwd_s, bwd_s}}")
    L = len(layers)
    costs: list[float | None] = [None] * L
    for i, entry in enumerate(layers):
        idx = entry.get("index") if isinstance(entry, Mapping) else None
        if not isinstance(idx, int) or not 1 <= idx <= L or costs[idx - 1] is not None:
            raise SedonaError(f"{where}: layers[{i}].index must be a distinct integer in 1..{L}")
        costs[idx - 1] = _step_seconds(entry, f"{where}: layers[{i}]")
    if "classifier" not in profile:
        raise SedonaError(f"{where}: missing 'classifier' {{fwd_s, bwd_s}}")
    classifier = _step_seconds(profile["classifier"], f"{where}: classifier")
    heads: dict[str, list[float | None]] = {}
    raw_heads = profile.get("heads", {})
    if not isinstance(raw_heads, Mapping):
        raise SedonaError(f"{where}: 'heads' must map a head name to a list of {{after, fwd_s, bwd_s}}")
    for name, entries in raw_heads.items():
        row: list[float | None] = [None] * (L - 1)
        if not isinstance(entries, list):
            raise SedonaError(f"{where}: heads.{name} must be a list")
        for j, entry in enumerate(entries):
            after = entry.get("after") if isinstance(entry, Mapping) else None
            if not isinstance(after, int) or not 1 <= after <= L - 1:
                raise SedonaError(f"{where}: heads.{name}[{j}].after must be an integer in 1..{L - 1}")
            row[after - 1] = _step_seconds(entry, f"{where}: heads.{name}[{j}]")
        heads[str(name)] = row
    found_arch = profile.get("arch") or arch or ""
    if arch and profile.get("arch") and profile["arch"] != arch:
        raise SedonaError(f"{where}: profile is for {profile['arch']!r}, not {arch!r}")
    bb, bw = profile.get("boundary_bytes"), profile.get("transfer_bytes_per_s")
    shape = profile.get("input_shape")
    return CostModel(
        arch=str(found_arch), num_layers=L, unit="s", layer_cost=costs, head_cost=heads,
        classifier_cost=classifier, transfer_cost=transfer_costs(bb, bw, L),
        boundary_bytes=None if bb is None else [float(b) for b in bb], transfer_bytes_per_s=bw,
        device=str(profile.get("device", "")), batch_size=profile.get("batch_size"),
        input_shape=list(shape) if shape is not None else None, source="measured profile" if where == "profile" else f"measured profile {where}",
    )


def _step_seconds(entry: Any, where: str) -> float:
    if not isinstance(entry, Mapping):
        raise SedonaError(f"{where}: expected an object with fwd_s and bwd_s")
    total = 0.0
    for key, required in (("fwd_s", True), ("bwd_s", True), ("opt_s", False)):
        v = entry.get(key)
        if v is None and not required:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise SedonaError(f"{where}.{key}: expected a non-negative number of seconds, got {v!r}")
        total += float(v)
    return total
