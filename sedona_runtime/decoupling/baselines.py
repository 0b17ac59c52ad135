"""Baseline decouplings: end-to-end backprop (one block) and uniform K-block splits (DGL, PredSim)."""
from __future__ import annotations

from sedona_runtime.decoupling.discretize import blocks_from_boundaries
from sedona_runtime.decoupling.schema import BlockSpec, Decoupling, validate
from sedona_runtime.utils.errors import SedonaError

# Baseline name -> the auxiliary head its blocks use (DGL: Belilovsky et al. 2020; PredSim: Noekland & Eidnes 2019).
BASELINE_HEADS = {"dgl": "mlp_sr", "predsim": "predsim"}


def uniform_boundaries(num_layers: int, K: int) -> list[int]:  # noqa: N803
    """Cuts (after these 1-based layers) splitting `num_layers` layers into K blocks as evenly as possible.

    Block sizes differ by at most one; the first `num_layers % K` blocks get the extra layer
    (numpy.array_split's convention), so earlier, higher-resolution blocks are never the smaller ones.
    """
    if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= num_layers:
        raise SedonaError(f"K must be an integer in 1..{num_layers} (the number of layers), got {K!r}")
    size, extra = divmod(num_layers, K)
    cuts, last = [], 0
    for k in range(K - 1):
        last += size + (1 if k < extra else 0)
        cuts.append(last)
    return cuts


def uniform_decoupling(arch: str, num_layers: int, K: int, head: str, *, source: str = "") -> Decoupling:  # noqa: N803
    """K blocks of (nearly) equal layer count, every block but the last with auxiliary head `head`."""
    cuts = uniform_boundaries(num_layers, K)
    dec = Decoupling(
        arch=arch,
        num_layers=num_layers,
        blocks=blocks_from_boundaries(cuts, [head] * len(cuts), num_layers),
        source=source or f"uniform split into {K} blocks with {head} heads",
    )
    validate(dec)
    return dec


def baseline_decoupling(name: str, arch: str, num_layers: int, K: int) -> Decoupling:  # noqa: N803
    """The decoupling of baseline `name` ("dgl" or "predsim") at K blocks."""
    if name not in BASELINE_HEADS:
        raise SedonaError(f"unknown baseline {name!r} (known: backprop, {', '.join(BASELINE_HEADS)})")
    head = BASELINE_HEADS[name]
    return uniform_decoupling(arch, num_layers, K, head, source=f"{name}:{K} (uniform split, {head} heads)")


def backprop_decoupling(arch: str, num_layers: int) -> Decoupling:
    """A single block: end-to-end backprop through the network's own classifier."""
    if not isinstance(num_layers, int) or num_layers < 1:
        raise SedonaError(f"num_layers must be a positive integer, got {num_layers!r}")
    dec = Decoupling(arch, num_layers, [BlockSpec(first=1, last=num_layers, head=None)], source="backprop (one block)")
    validate(dec)
    return dec
