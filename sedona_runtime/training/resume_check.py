"""Which fields of a training config a resume may change: the check shared by the trainer and the pipeline."""
from __future__ import annotations

from sedona_runtime.utils.config import flatten
from sedona_runtime.utils.errors import SedonaError

# Fields that may differ between a run and its resumption without changing the computation. Speed settings
# may change on resume too (and runs saved before they existed have no such keys).
_RESUME_FREE = ("out_dir", "device", "log_interval", "data.workers", "channels_last", "compile", "cudnn_benchmark")


def check_resume_config(saved: dict, current: dict, run) -> None:
    """SedonaError naming the fields (up to 4) where a resumed run's config differs from the saved one;
    output directory, device, log interval, data workers and the speed settings (channels_last, compile,
    cudnn_benchmark) may change; `run` is the RunDir (named in it).
    Recorded paths are compared as absolute ones."""
    a, b = _absolute(flatten(saved)), _absolute(flatten(current))
    differ = sorted(k for k in set(a) | set(b) if k not in _RESUME_FREE and a.get(k) != b.get(k))
    if differ:
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in differ[:4])
        raise SedonaError(f"cannot resume {run.path}: the config differs from its config.json: {shown}")


def _absolute(flat: dict) -> dict:
    """Recorded paths made absolute (runs recorded before paths were resolved once hold them as typed)."""
    import os

    from sedona_runtime.utils.imports import absolute_spec

    out = dict(flat)
    for key in ("model.arch", "data.dataset"):
        if isinstance(out.get(key), str):
            out[key] = absolute_spec(out[key])
    if isinstance(out.get("data.data_dir"), str):
        out["data.data_dir"] = os.path.abspath(out["data.data_dir"])
    return out
