"""The accuracy benchmark's decouplings: SEDONA, DGL and the planned cut, with multiply-add speedup predictions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sedona_runtime.decoupling import Decoupling, save_decoupling
from sedona_runtime.planning.cost_model import CostModel, from_flops
from sedona_runtime.planning.planner import make_plan, planned_decoupling
from sedona_runtime.planning.predict import blocks_of, predict
from sedona_runtime.planning.session import heads_needed
from sedona_runtime.training.config import TrainConfig, resolve_defaults
from sedona_runtime.training.greedy import build_parts
from sedona_runtime.training.resolve import resolve_for_model
from sedona_runtime.utils.errors import SedonaError


@dataclass
class Entry:
    """One decoupling to train: its display name, the spec or file the trainer gets, and its cut."""

    name: str
    spec: str
    dec: Decoupling
    predicted_speedup: float

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "boundaries": list(self.dec.boundaries),
                "heads": list(self.dec.heads), "predicted_speedup": self.predicted_speedup,
                "source": self.dec.source}


def decouplings(base: TrainConfig, blocks: int, min_speedup: float | None, out: Path) -> tuple[list[Entry], dict]:
    """sedona:K, dgl:K and the cut planned from sedona:K's alpha under a multiply-add cost model (the fastest
    cut, or the best alpha score reaching `min_speedup`); the planned one is written to `out` as a file.

    `base` is an unresolved config whose decoupling is sedona:K; returns the entries and the plan record.
    """
    parts = build_parts(resolve_defaults(base))  # the model exactly as the trainer builds it (classes, stem)
    model_cfg, shape = parts.cfg.model, tuple(int(s) for s in parts.bundle.input_shape)
    arch, L = model_cfg.arch, parts.model.num_layers
    sedona = parts.decoupling
    dgl = resolve_for_model(f"dgl:{blocks}", arch, L)
    heads = heads_needed(sedona, None)
    heads += [h for h in dgl.heads if h not in heads]
    cm: CostModel = from_flops(model_cfg, shape, parts.cfg.batch_size, heads)
    plan = make_plan(sedona, cm, blocks, min_speedup)
    if min_speedup is None:
        cut, label = plan.fastest, "planned (fastest cut)"
    elif plan.chosen is None:
        raise SedonaError(f"no {blocks}-block cut of {arch} reaches a predicted speedup of {min_speedup:g}x; the "
                          f"maximum is {plan.fastest.speedup:.3f}x (boundaries {list(plan.fastest.boundaries)})")
    else:
        cut, label = plan.chosen, f"planned (>= {min_speedup:g}x)"
    planned = planned_decoupling(sedona, plan, cut, note="accuracy benchmark")
    path = out / f"planned_{arch}_k{blocks}.json"
    save_decoupling(planned, path)

    def entry(name: str, spec: str, dec: Decoupling) -> Entry:
        return Entry(name, spec, dec, predict(cm, blocks_of(dec)).speedup)

    entries = [entry(f"sedona:{blocks}", f"sedona:{blocks}", sedona), entry(f"dgl:{blocks}", f"dgl:{blocks}", dgl),
               entry(label, str(path), planned)]
    return entries, {"decoupling": str(path), **plan.to_dict()}
