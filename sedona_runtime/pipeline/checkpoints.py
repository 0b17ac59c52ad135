"""Pipeline checkpoints: one file per block written by its owner, committed by the coordinator."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from sedona_runtime.training.checkpoint import load_checkpoint, safe_load, save_checkpoint
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_torch_save, atomic_write_json

# Layout under <run>/checkpoints/ (next to the single-process trainer's last.pt / best.pt):
#   blocks/step_<S>/block<i>.pt   written atomically by block i when the step-S marker reaches it
#   pipeline.json                 {"step": S, "blocks": K}: written (atomically) by the coordinator only
#                                 once all K files of step S exist, so it always names a complete,
#                                 consistent set; older step directories are deleted after that.
COMMIT = "pipeline.json"
#   eval_weights/step_<S>/block<i>.pt  block i's weights at validation step S, written by the block itself
#   best.json                     {"step", "val_error", "blocks", "dir"}: the validation step with the best
#                                 error, written by the coordinator once that round is counted and all K
#                                 candidate files exist; the other candidates are deleted then.
BEST = "best.json"
CANDIDATES = "eval_weights"


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
    _remove_steps_before(checkpoints / "blocks", step)


def _remove_steps_before(root: Path, step: int) -> None:
    """Delete the `step_<S>` folders under `root` with S < `step` (other names are left alone)."""
    for d in root.glob("step_*"):
        number = d.name[len("step_"):]
        if number.isdigit() and int(number) < step:
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
    (checkpoints / BEST).unlink(missing_ok=True)
    shutil.rmtree(checkpoints / "blocks", ignore_errors=True)
    shutil.rmtree(checkpoints / CANDIDATES, ignore_errors=True)


def candidate_dir(checkpoints: Path, step: int) -> Path:
    return Path(checkpoints) / CANDIDATES / f"step_{step:08d}"


def save_candidate(checkpoints: Path, step: int, index: int, weights: dict) -> Path:
    """Block `index` writes its weights at validation step `step` (a best-weights candidate)."""
    path = candidate_dir(checkpoints, step) / f"block{index}.pt"
    return atomic_torch_save(path, {"step": int(step), "block": index, "weights": weights})


def promote_best(checkpoints: Path, step: int, blocks: int, val_error: float) -> None:
    """Make validation step `step` the best weights (all K candidate files exist), delete the candidates of
    earlier steps. Later steps' candidates are left alone: blocks run ahead of the coordinator's counting,
    so they may be written (or being written) already, and their own round decides them."""
    checkpoints = Path(checkpoints)
    folder = candidate_dir(checkpoints, step)
    missing = [i for i in range(1, blocks + 1) if not (folder / f"block{i}.pt").is_file()]
    if missing:
        raise SedonaError(f"best weights of step {step} lack block(s) {missing}")
    atomic_write_json(checkpoints / BEST, {"step": int(step), "val_error": float(val_error), "blocks": blocks,
                                           "dir": str(folder.relative_to(checkpoints))})
    _remove_steps_before(checkpoints / CANDIDATES, step)


def drop_candidate(checkpoints: Path, step: int) -> None:
    """Validation step `step` was not the best: its candidate files go."""
    shutil.rmtree(candidate_dir(checkpoints, step), ignore_errors=True)


def best_weights(checkpoints: Path) -> tuple[list[dict], int, float] | None:
    """(each block's weights, their step, their validation error) of the pipeline's best, or None."""
    path = Path(checkpoints) / BEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        folder = Path(checkpoints) / record["dir"]
        states = [safe_load(folder / f"block{i}.pt")["weights"] for i in range(1, int(record["blocks"]) + 1)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SedonaError(f"cannot read the best weights named by {path}: {exc}") from None
    return states, int(record["step"]), float(record["val_error"])
