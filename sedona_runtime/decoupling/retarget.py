"""Map a decoupling onto a network with a different layer count by proportional boundary positions."""
from __future__ import annotations

import math

from sedona_runtime.decoupling.discretize import blocks_from_boundaries
from sedona_runtime.decoupling.schema import Decoupling, validate
from sedona_runtime.utils.errors import SedonaError


def retarget_boundaries(boundaries: list[int], src_layers: int, dst_layers: int) -> list[int]:
    """Cuts after 1-based layers of a `src_layers` network moved to a `dst_layers` network.

    A cut after layer b sits at fraction b/src of the depth; it moves to round(b * dst / src)
    (halves round up), then is clamped so that every cut stays strictly after the previous one and
    leaves room for the remaining ones: K is always preserved.
    """
    K = len(boundaries) + 1  # noqa: N806
    if K > dst_layers:
        raise SedonaError(f"cannot retarget {K} blocks onto a network of {dst_layers} layers")
    out: list[int] = []
    for i, b in enumerate(boundaries):
        target = math.floor(b * dst_layers / src_layers + 0.5)
        lo = out[-1] + 1 if out else 1
        hi = dst_layers - (K - 1 - i)  # leave one layer for each later block
        out.append(min(max(target, lo), hi))
    return out


def retarget(dec: Decoupling, arch: str, num_layers: int) -> Decoupling:
    """`dec`'s cuts and heads placed proportionally on model `arch` with `num_layers` layers.

    Used to run a shipped decoupling (e.g. resnet152_k4) on another network, such as the small demo
    model. alpha/beta are dropped (they describe the source network's boundaries); "source" records
    the retargeting. When arch and layer count already match, `dec` is returned unchanged.
    """
    validate(dec)
    if dec.arch == arch and dec.num_layers == num_layers:
        return dec
    cuts = retarget_boundaries(dec.boundaries, dec.num_layers, num_layers)
    note = f"retargeted from {dec.arch} ({dec.num_layers} layers, cuts {dec.boundaries}) to {arch} ({num_layers} layers)"
    out = Decoupling(
        arch=arch,
        num_layers=num_layers,
        blocks=blocks_from_boundaries(cuts, dec.heads, num_layers),
        source=f"{note}; {dec.source}" if dec.source else note,
        origin=f"{dec.origin or dec.arch} retargeted to {arch}",
    )
    validate(out)
    return out
