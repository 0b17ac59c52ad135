"""Training checkpoints: every block's runner state plus the step, written atomically, read with clear errors."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_torch_save

FORMAT = 1


def rng_state() -> dict:
    """The torch RNG states (CPU and every CUDA device), so dropout-like randomness resumes exactly."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, step: int, blocks: list[dict], extra: dict | None = None) -> Path:
    """Write a checkpoint atomically: a crash mid-write leaves the previous checkpoint intact."""
    payload = {"format": FORMAT, "step": int(step), "blocks": blocks, "rng": rng_state(), **(extra or {})}
    return atomic_torch_save(path, payload)


def safe_load(path: str | os.PathLike, what: str = "file") -> Any:
    """torch.load with `weights_only=True` onto the CPU: tensors, containers and plain values only, never
    arbitrary Python objects (unpickling those could run code). SedonaError, one line, when unreadable.

    Every payload sedona-runtime writes (trainer and pipeline checkpoints, best weights, the search's
    checkpoint) is of that kind: state dicts, optimizer/scheduler/GradScaler states, RNG byte tensors.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise SedonaError(f"cannot read {what} {path}: it holds Python objects other than tensors and plain "
                              "values, which are not loaded (that could run code)") from None
        raise SedonaError(f"cannot read {what} {path}: {_first_line(exc)}") from None
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise SedonaError(f"cannot read {what} {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike, *, num_blocks: int | None = None) -> dict:
    """Read a checkpoint written by `save_checkpoint` (SedonaError when missing, corrupt or mismatched)."""
    path = Path(path)
    if not path.is_file():
        raise SedonaError(f"no checkpoint at {path}")
    payload = safe_load(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SedonaError(f"{path} is not a sedona-runtime checkpoint (format {FORMAT})")
    if num_blocks is not None and len(payload["blocks"]) != num_blocks:
        raise SedonaError(f"checkpoint {path} has {len(payload['blocks'])} blocks, the run has {num_blocks}")
    return payload
