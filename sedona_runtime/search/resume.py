"""Resuming a search: the settings a resume may change are training.resume_rules' (kind "search"), the
table every kind of run shares. (Stopping at a step boundary on Ctrl-C or SIGTERM is
utils.interrupt.deferred_stop, shared with the trainers.)"""
from __future__ import annotations

from sedona_runtime.training.resume_rules import check_resume


def check_resumable(saved: dict, now: dict, where: str = "the search") -> None:
    """SedonaError naming the first setting that differs from the stopped search's (its config.json content
    `saved`), with the option that sets it and what to do instead."""
    from sedona_runtime.search.config import SearchConfig
    from sedona_runtime.utils.config import from_dict, to_dict

    # Read as today's config: a search from before a setting existed has its default (one shard before data
    # parallelism), as it ran.
    saved = to_dict(from_dict(SearchConfig, saved, where=f"{where}: config.json"))
    check_resume("search", saved, now, where)
