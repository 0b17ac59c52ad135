"""Resuming a search: which settings a resume may change. (Stopping at a step boundary on Ctrl-C or
SIGTERM is utils.interrupt.deferred_stop, shared with the trainers.)"""
from __future__ import annotations

from sedona_runtime.search.config import RESUME_FREE
from sedona_runtime.utils.config import flatten
from sedona_runtime.utils.errors import SedonaError


def check_resumable(saved: dict, now: dict) -> None:
    """SedonaError naming the first setting that differs from the stopped search's."""
    a, b = flatten(saved), flatten(now)
    a.setdefault("shards", 1)  # searches from before data parallelism had one shard
    # The model's num_classes/stem/in_channels were resolved from the data when the search began.
    derived = {"model.num_classes", "model.stem", "model.in_channels"}
    for key in sorted(set(a) | set(b)):
        if key in RESUME_FREE or key in derived:
            continue
        if a.get(key) != b.get(key):
            raise SedonaError(f"cannot resume: {key} was {a.get(key)!r}, now {b.get(key)!r} "
                              "(resume with the same settings, or start over with --overwrite)")
