"""The link benchmark's planned cut and the layout planner's predictions for two hosts and a link rate."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from speedup_lib.measure import BenchConfig, core_sets
from speedup_lib.planned import planned_spec, predicted, predicted_step, profile_cost_model


def plan_and_predict(bc: BenchConfig, profile: str | None, out: Path) -> tuple[str, Callable, str]:
    """(planned K = 2 decoupling file, predict(K, R, placement, gbps) -> seconds per step, profile source)."""
    from sedona_runtime.planning.profile import from_profile
    from sedona_runtime.utils.io import atomic_write_json

    if profile:
        cm, source = from_profile(profile, arch=bc.arch), profile
    else:
        cm, measured = profile_cost_model(bc, core_sets(1)[0])
        source = str(out / "profile.json")
        atomic_write_json(source, measured)
    planned, _ = planned_spec(bc, cm, out)
    blocks = {1: [(1, cm.num_layers, None)], 2: [tuple(b) for b in predicted(bc, cm, planned)["blocks"]]}

    def predict(K: int, R: int, placement: str, gbps: float) -> float:
        return predicted_step(bc, cm, blocks[K], R, K * R, link_gbps=gbps, hosts=2, placement=placement)

    return planned, predict, source
