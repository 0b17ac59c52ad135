"""The one resolver: a training run's options -> its RunSpec, with the data it read to decide.

Every None of a TrainConfig is filled here and nowhere else: the trainer and the pipeline's coordinator
call `resolve_run`; the blocks and `trained.load` only read the spec it made (training.spec).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from sedona_runtime.training.config import TrainConfig, resolve_defaults, step_defaults, validate
from sedona_runtime.training.spec import InputSpec, RunSpec
from sedona_runtime.utils.errors import SedonaError


@dataclass
class ResolvedRun:
    """A run's spec and the data it was resolved from (the trainer and the coordinator read batches from it)."""

    spec: RunSpec
    bundle: Any    # data.DataBundle


def resolve_run(cfg: TrainConfig, *, progress=None) -> ResolvedRun:
    """The RunSpec of options `cfg`, in four steps, each filling what it can know:

    1. the options (`resolve_defaults`): rates, optimizer, batch size, steps, intervals, label smoothing,
       width and image size from the data set, method and architecture; paths absolute, user code imported;
    2. the data (`data.build_data`, `progress(done, total, elapsed_s)` hears about a long image check): the
       batch must fit the training split; steps from epochs and the intervals that follow; the model's
       classes, channels and stem; a data set function's image size;
    3. the network, on the meta device (no weights, no draw from any generator): the whole network is checked
       on the input (classifier included) and the decoupling is resolved for it (`--retarget` included);
    4. the input: the training split's mean/std, the images' scale and dtype, the augmentation; the class
       names (data.classes: an ImageFolder's folders, a user Dataset's `classes`, the built-in data sets').

    Raises SedonaError (one line) for any option, data or decoupling that cannot make a run.
    """
    from sedona_runtime.data import build_data

    cfg = resolve_defaults(cfg)
    bundle = build_data(cfg.data, progress=progress)
    cfg = _from_data(cfg, bundle)
    decoupling = _decoupling(cfg, tuple(int(s) for s in bundle.input_shape))
    from sedona_runtime.data.classes import class_names

    spec = RunSpec(cfg, decoupling, _input(bundle), class_names(bundle, cfg.data), str(getattr(bundle, "note", "") or ""))
    return ResolvedRun(spec, bundle)


def _from_data(cfg: TrainConfig, bundle) -> TrainConfig:
    """What the data decides: steps from epochs (full batches, as BatchStream draws them) and the intervals
    that follow, the model's classes, channels and stem, a data set function's image size."""
    train_size = len(bundle.train)
    if cfg.batch_size > train_size:
        raise SedonaError(f"batch size {cfg.batch_size} is larger than the training set ({train_size} "
                          f"samples after the validation split); pass a smaller --batch-size")
    out = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=int(bundle.num_classes),
                                                             in_channels=int(bundle.input_shape[0]),
                                                             stem=bundle.stem))
    if out.data.is_user:  # the images are taken as they are: the spec records their size
        out.data = dataclasses.replace(out.data, image_size=int(bundle.input_shape[1]))
    if out.epochs is not None:
        out.steps = out.epochs * (train_size // out.batch_size)
        step_defaults(out)
    validate(out)
    return out


def _decoupling(cfg: TrainConfig, input_shape: tuple[int, int, int]):
    """The decoupling `cfg.decoupling` names, resolved for the model (training.resolve.resolve_for_model),
    after the whole network was checked on `input_shape` (training.build.check_network); shapes only."""
    from sedona_runtime.models import build_model
    from sedona_runtime.training.build import check_network
    from sedona_runtime.training.resolve import resolve_for_model

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_model(cfg.model)
    check_network(cfg, input_shape, model)
    return resolve_for_model(cfg.decoupling, cfg.model.arch, model.num_layers, retarget=cfg.retarget)


def _input(bundle) -> InputSpec:
    """How the data's images become the network's input: the training split's statistics, the images' scale
    and dtype (one training image, read with the global generators seeded and restored: a data set function's
    random transforms disturb nothing), the augmentation."""
    from sedona_runtime.utils.seed import seeded_globals

    with seeded_globals("run-spec-input"):
        x, _ = bundle.train[0]
    augment = bundle.augment.spec() if bundle.augment is not None else None
    return InputSpec(shape=[int(s) for s in bundle.input_shape], mean=[float(m) for m in bundle.train.mean],
                     std=[float(s) for s in bundle.train.std], scale=None if x.is_floating_point() else 255.0,
                     dtype=str(x.dtype).replace("torch.", ""), augment=augment)
