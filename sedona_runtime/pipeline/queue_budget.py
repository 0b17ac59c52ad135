"""How much memory the pipeline's queues may hold, checked before any process starts."""
from __future__ import annotations

import math

import psutil
import torch

from sedona_runtime.utils.errors import SedonaError

# The queues may take at most this share of the memory available when the run starts: the blocks'
# own weights, activations and optimizer state need the rest.
SHARE = 0.5


def item_bytes(parts, batch_size: int) -> list[int]:
    """Bytes of one item on each edge, labels included: coordinator -> block 1 carries the images as
    stored (uint8 for the built-in data sets), block i -> block i+1 the features in the run's dtype."""
    from sedona_runtime.models import layer_output_shapes

    shape = tuple(parts.bundle.input_shape)
    outs = layer_output_shapes(parts.model, shape)
    raw = parts.bundle.train.get_batch(torch.tensor([0]))[0].element_size()
    size = torch.tensor([], dtype=getattr(torch, parts.cfg.dtype)).element_size()
    features = [math.prod(outs[b.last - 1]) * size for b in parts.decoupling.blocks[:-1]]
    return [batch_size * (n + 8) for n in [math.prod(shape) * raw] + features]


def check(parts, depth: int, window: int, batch_size: int, available: int | None = None) -> int:
    """The bytes the queues can hold at most; SedonaError when that exceeds SHARE of the available memory.

    Per edge at most `depth` items wait in the receiver's queue, one is being received and `window`
    are unfinished at the sender.
    """
    per_edge = item_bytes(parts, batch_size)
    held = [(depth + window + 1) * b for b in per_edge]
    total = sum(held)
    available = psutil.virtual_memory().available if available is None else available
    budget = SHARE * available
    if total > budget:
        worst = max(range(len(held)), key=held.__getitem__)
        src = "the coordinator" if worst == 0 else f"block {worst}"
        items = int(budget / sum(per_edge))  # items per edge that fit: depth + window + 1 at most
        # Name the setting that is too large (the larger one when both are), and the value that fits
        # beside the other one as it is.
        if window > depth:
            what, value, fix = "--window", window, f"--window {max(1, items - depth - 1)}"
        else:
            what, value, fix = "--queue-depth", depth, f"--queue-depth {max(1, items - window - 1)}"
        too_both = items < 3  # even depth 1 and window 1 do not fit
        advice = "a smaller --batch-size" if too_both else f"{fix} or less"
        raise SedonaError(f"{what} {value} lets up to {depth + window + 1} items (queue depth {depth} + window "
                          f"{window} + 1) of {_fmt(per_edge[worst])} wait between {src} and block {worst + 1} "
                          f"({_fmt(total)} over all edges), more than half of the {_fmt(available)} of memory "
                          f"available: use {advice}")
    return total


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
