"""A finished (or stopped) run directory's network, rebuilt from config.json with its best or last weights."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sedona_runtime.utils.errors import SedonaError

WEIGHTS = ("best", "last")


@dataclass
class TrainedRun:
    """The run's spec (its resolved config and decoupling), its network and blocks holding the chosen weights."""

    path: Path
    spec: Any                 # training.spec.RunSpec (config.json; a run written before the spec is upgraded)
    cfg: Any                  # training.config.TrainConfig: spec.train
    decoupling: Any           # decoupling.Decoupling: spec.decoupling
    model: Any                # models.LayeredNet; its modules are shared with `blocks`
    blocks: list              # training.block.Block, one per block of the decoupling
    input_shape: tuple[int, int, int]
    weights: str              # "best" or "last"
    step: int                 # the training step the weights are from
    val_error: float | None   # best.pt's validation top-1 error (None for last)
    summary: dict | None      # summary.json, when the run finished

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.cfg.dtype)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SedonaError(f"cannot read {path}: {exc}") from None


def block_states(run_dir: Path, weights: str) -> tuple[list[dict], int, float | None, str]:
    """(each block's weights, their step, best.pt's val error or None, the weights actually used).

    best: checkpoints/best.pt (the single-process trainer writes it at every new best validation error) or
    checkpoints/best.json naming the pipeline blocks' files of their best validation step; a run without
    a validation split has none, and then the last weights are used. last: the single-process trainer's
    checkpoints/last.pt, or the pipeline's committed checkpoint (checkpoints/pipeline.json naming
    checkpoints/blocks/step_<S>/block<i>.pt).
    """
    from sedona_runtime.pipeline import checkpoints as pipeline_ckpt
    from sedona_runtime.training.checkpoint import load_checkpoint, safe_load

    if weights not in WEIGHTS:
        raise SedonaError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    checkpoints = run_dir / "checkpoints"
    best = checkpoints / "best.pt"
    if weights == "best" and (checkpoints / pipeline_ckpt.BEST).is_file():  # the pipeline's blocks wrote it
        states, step, val_error = pipeline_ckpt.best_weights(checkpoints)
        return [dict(s) for s in states], step, val_error, "best"
    if weights == "best" and best.is_file():
        # The safe loader (weights_only=True): a run directory from elsewhere must not run code here.
        payload = safe_load(best, "best-weights file")
        if not isinstance(payload, dict) or "blocks" not in payload:
            raise SedonaError(f"{best} is not a sedona-runtime best-weights file")
        return list(payload["blocks"]), int(payload.get("step", 0)), payload.get("val_error"), "best"
    last = checkpoints / "last.pt"
    record = pipeline_ckpt.committed(checkpoints) if checkpoints.is_dir() else None
    # A directory may hold both when one kind of run replaced the other (--overwrite): the newer wins.
    if record is not None and (not last.is_file() or _mtime(last) < _mtime(checkpoints / pipeline_ckpt.COMMIT)):
        step, k = int(record["step"]), int(record["blocks"])
        states = [pipeline_ckpt.load_block(checkpoints, step, i)["blocks"][0]["block"] for i in range(1, k + 1)]
        return states, step, None, "last"
    if last.is_file():
        ck = load_checkpoint(last)
        return [b["block"] for b in ck["blocks"]], int(ck["step"]), None, "last"
    raise SedonaError(f"{run_dir}: no weights found (no checkpoints/best.pt, last.pt or pipeline.json); "
                      "is it a training run directory?")


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def load_run(run_dir: str | Path, *, weights: str = "best") -> TrainedRun:
    """Rebuild the run's network and blocks from its spec (config.json, training.spec.RunSpec; one written before
    the spec is read too) with training.build.build_network and load the chosen weights (on the CPU, in the
    run's dtype); the heads are sized for the run's input shape, as in training.

    Raises SedonaError when the directory is not a run, a file is unreadable, the user network named by
    import path cannot be imported, or the weights do not fit the network.
    """
    from sedona_runtime.training.build import build_network
    from sedona_runtime.training.spec import RunSpec

    path = Path(run_dir)
    if not path.is_dir():
        raise SedonaError(f"run directory {path} does not exist")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict) or "train" not in config or "decoupling" not in config:
        raise SedonaError(f"{path / 'config.json'} is not a training run's config (a search's run cannot be exported)")
    spec = RunSpec.from_json(config, where=str(path / "config.json"))
    cfg, dec, input_shape = spec.train, spec.decoupling, spec.input_shape
    states, step, val_error, used = block_states(path, weights)
    if len(states) != dec.K:
        raise SedonaError(f"{path}: the weights hold {len(states)} blocks, the decoupling has {dec.K}")
    dtype = getattr(torch, cfg.dtype)
    with torch.random.fork_rng(devices=[]):  # rebuilding must not disturb the caller's random state
        net = build_network(spec)
        model, blocks = net.model, net.blocks
    for i, (block, state) in enumerate(zip(blocks, states), start=1):
        block.to(dtype=dtype)
        try:
            block.load_state_dict(state)
        except (RuntimeError, KeyError) as exc:
            raise SedonaError(f"{path}: the weights of block {i} do not fit the network built from config.json: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    summary = _read_json(path / "summary.json") if (path / "summary.json").is_file() else None
    return TrainedRun(path, spec, cfg, dec, model, blocks, input_shape, used, step, val_error, summary)
