"""Pipeline checkpoints: one file per block written by its owner, committed by the coordinator."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from sedona_runtime.training.checkpoint import load_checkpoint, save_checkpoint
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_json

# Layout under <run>/checkpoints/ (next to the single-process trainer's last.pt / best.pt):
#   blocks/step_<S>/block<i>.pt   written atomically by block i when the step-S marker reaches it
#   pipeline.json                 {"step": S, "blocks": K}: written (atomically) by the coordinator only
#                                 once all K files of step S exist, so it always names a complete,
#                                 consistent set; older step directories are deleted after that.
COMMIT = "pipeline.json"


def block_path(checkpoints: Path, step: int, index: int) -> Path:
    return Path(checkpoints) / "blocks" / f"step_{step:08d}" / f"block{index}.pt"


def save_block(checkpoints: Path, step: int, index: int, state: dict, extra: dict | None = None) -> Path:
    """Block `index` (1-based) writes its own state for `step`."""
    return save_checkpoint(block_path(checkpoints, step, index), step=step, blocks=[state],
                           extra={"block": index, **(extra or {})})


def commit(checkpoints: Path, step: int, blocks: int, extra: dict | None = None) -> None:
    """Point at step `step` (all K block files exist), then delete older ones."""
    checkpoints = Path(checkpoints)
    missing = [i for i in range(1, blocks + 1) if not block_path(checkpoints, step, i).is_file()]
    if missing:
        raise SedonaError(f"checkpoint of step {step} lacks block(s) {missing}")
    atomic_write_json(checkpoints / COMMIT, {"step": step, "blocks": blocks, **(extra or {})})
    root = checkpoints / "blocks"
    for d in root.glob("step_*"):
        try:
            s = int(d.name.split("_", 1)[1])
        except ValueError:
            continue
        if s < step:
            shutil.rmtree(d, ignore_errors=True)


def committed(checkpoints: Path) -> dict | None:
    """The last commit record ({"step", "blocks", ...}) or None when no checkpoint was committed."""
    path = Path(checkpoints) / COMMIT
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        int(record["step"]), int(record["blocks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SedonaError(f"cannot read {path}: {exc}") from exc
    return record


def load_block(checkpoints: Path, step: int, index: int) -> dict:
    """Block `index`'s checkpoint payload of `step` ({"step", "blocks": [state], "rng", ...})."""
    payload = load_checkpoint(block_path(checkpoints, step, index), num_blocks=1)
    if int(payload["step"]) != step:
        raise SedonaError(f"{block_path(checkpoints, step, index)} holds step {payload['step']}, expected {step}")
    return payload


def remove_all(checkpoints: Path) -> None:
    """Delete every pipeline checkpoint (the commit record first, so no reader sees a partial set)."""
    checkpoints = Path(checkpoints)
    (checkpoints / COMMIT).unlink(missing_ok=True)
    shutil.rmtree(checkpoints / "blocks", ignore_errors=True)
