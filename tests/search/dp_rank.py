"""One rank of a data-parallel Bilevel on the tiny batch-norm net (test_search_distributed starts two).

`run_steps` is also the single-process reference: the same 3 outer steps under any Sharding.
Usage: python dp_rank.py RANK WORLD PORT OUT.pt (computes float64, then float32).
"""
from __future__ import annotations

import sys

import torch

from search_tiny import tiny_batch, tiny_relaxed
from sedona_runtime.search.bilevel import Bilevel, InnerSettings
from sedona_runtime.search.memory import WeightSet
from sedona_runtime.search.sharding import Sharding

STEPS, T = 3, 2


def run_steps(sharding: Sharding, dtype: torch.dtype, recompute: bool = False) -> dict[str, torch.Tensor]:
    """alpha, beta and the weights (state and momentum) after STEPS outer steps of T inner steps each
    (`recompute`: the hypergradient by per-step recomputation, search/recompute.py)."""
    net = tiny_relaxed(bn=True).to(dtype)
    n, m = net.num_layers - 1, net.pool_size
    alpha = torch.zeros(n, 2, dtype=dtype, requires_grad=True)
    beta = torch.zeros(n, m, dtype=dtype, requires_grad=True)
    bil = Bilevel(net, alpha, beta, inner=InnerSettings(), fast=False, sharding=sharding, recompute=recompute)
    weights = WeightSet({k: v.clone() for k, v in net.state_dict().items()}, {}, 0)
    cast = lambda b: (b[0].to(dtype), b[1])  # noqa: E731
    for s in range(STEPS):
        batches = [cast(tiny_batch(8, seed=10 * s + t)) for t in range(T)]
        weights = bil.outer_step(weights, batches, cast(tiny_batch(8, seed=100 + s)), lr=0.1).weights
    out = {"alpha": alpha.detach().clone(), "beta": beta.detach().clone()}
    out.update({f"state.{k}": v for k, v in weights.state.items()})
    out.update({f"momentum.{k}": v for k, v in weights.momentum.items()})
    return out


if __name__ == "__main__":
    from sedona_runtime.pipeline import rendezvous
    from sedona_runtime.search import distributed

    torch.set_num_threads(1)
    rank, world, port, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = rendezvous.connect_store(rendezvous.LOOPBACK, port, world, 60.0)
    distributed.connect(store, rank, world, torch.device("cpu"), 60.0)
    group = distributed.RankGroup(world, rank, torch.device("cpu"))
    result = {str(d): run_steps(group, d) for d in (torch.float64, torch.float32)}
    result["recompute64"] = run_steps(group, torch.float64, recompute=True)  # --recompute across ranks
    group.check_same({"alpha": result["torch.float64"]["alpha"]}, 3)  # identical: passes
    try:  # one rank's beta differs in one element: every rank refuses, naming it
        group.check_same({"alpha": torch.zeros(2), "beta": torch.tensor([0.0, float(rank)])}, 7)
        result["diverged"] = ""
    except distributed.RanksDiverged as exc:
        result["diverged"] = str(exc)
    torch.save(result, path)
    distributed.close()
