"""Evaluate a trained run on its own test split or another one: every block's head, classifier, ensemble."""
from __future__ import annotations

import dataclasses
from typing import Any

from sedona_runtime.trained.load import TrainedRun
from sedona_runtime.utils.errors import SedonaError

SPLITS = ("test", "val", "train")


def evaluate_run(run: TrainedRun, *, split: str = "test", data_cfg: Any = None, batch_size: int | None = None,
                 device: str = "cpu") -> tuple[Any, str]:
    """(EvalResult, the data note) of `run`'s blocks on `split` of `data_cfg` (default: the run's own data).

    The same computation as the trainers' evaluation (training.evaluate.evaluate over eval_batches), so the
    run's own test split with its last weights reproduces summary.json's test errors exactly. Raises
    SedonaError for an unknown split, a run without that split, or data that does not fit the network.
    """
    from sedona_runtime.data import build_data, eval_batches
    from sedona_runtime.training.evaluate import evaluate
    from sedona_runtime.training.resolve import resolve_device

    if split not in SPLITS:
        raise SedonaError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    cfg = data_cfg if data_cfg is not None else run.cfg.data
    bundle = build_data(cfg)
    dataset = {"test": bundle.test, "val": bundle.val, "train": bundle.train}[split]
    if dataset is None or len(dataset) == 0:
        raise SedonaError(f"the data has no {split} split (its validation fraction is 0)")
    if int(bundle.num_classes) != run.cfg.model.num_classes:
        raise SedonaError(f"the data has {bundle.num_classes} classes, the network {run.cfg.model.num_classes}")
    _check_class_names(run, getattr(bundle, "class_names", None))
    if tuple(bundle.input_shape) != tuple(run.input_shape):
        raise SedonaError(f"the data's images are {tuple(bundle.input_shape)}, the network was trained on "
                          f"{tuple(run.input_shape)} (C, H, W)")
    dev = resolve_device(device)
    for b in run.blocks:
        b.to(dev)
    size = batch_size or run.cfg.eval_batch_size
    result = evaluate(run.blocks, eval_batches(dataset, size), dev, run.dtype)
    return result, f"{split} split of {bundle.note}"


def _check_class_names(run: TrainedRun, names: list[str] | None) -> None:
    """SedonaError when the run recorded its class names and the data names other ones (or another order):
    the same count of other classes would be scored silently against the wrong labels."""
    recorded = run.spec.classes
    if not recorded or not names or list(recorded) == list(names):
        return
    lacks, extra = sorted(set(recorded) - set(names)), sorted(set(names) - set(recorded))
    parts = [f"it lacks {', '.join(lacks[:3])}" if lacks else "", f"it has {', '.join(extra[:3])}" if extra else ""]
    diff = "; ".join(p for p in parts if p) or "the same names in another order"
    raise SedonaError(f"the data's classes are not the ones {run.path} was trained on ({diff}); evaluate it on "
                      "data with the same class names")


def result_dict(run: TrainedRun, result: Any, split: str) -> dict:
    """A JSON-able record of an evaluation: which weights, which split, and every error."""
    return {"run": str(run.path), "weights": run.weights, "step": run.step, "split": split,
            "decoupling": run.decoupling.to_json()["blocks"], **dataclasses.asdict(result)}
