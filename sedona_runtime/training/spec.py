"""RunSpec: everything a training run's network and data are built from, resolved once (the run's config.json).

The resolver (training.resolver.resolve_run) makes it from the options; the trainer, every pipeline block
(shipped to them in the setup handshake, as JSON), the coordinator's meta build and `trained.load` (evaluate,
export) build the network from it with training.build.build_network. Nothing builds from a decoupling's spec
string (`sedona:2`, `--retarget`): the spec holds the resolved Decoupling itself, so a decoupling resolved once
is the one every process builds, whatever files exist where it runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sedona_runtime.training.config import TrainConfig
from sedona_runtime.utils.config import from_dict, to_dict
from sedona_runtime.utils.errors import SedonaError

# 1: config.json before the spec (train, decoupling, data_note, classes; train.data.batch_size a copy of
#    train.batch_size; no input statistics). 2: the spec (spec_version, input; data.batch_size None).
SPEC_VERSION = 2


@dataclass
class InputSpec:
    """How the data's images become the network's input."""

    shape: list[int]           # (C, H, W) of one image
    mean: list[float]          # per channel, on the [0, 1] scale (the training split's)
    std: list[float]
    scale: float | None        # 255.0: uint8 images are divided by it first; None: float images taken as they are
    dtype: str                 # the images' dtype as stored: "uint8", "float32", ...
    augment: dict | None       # the training augmentation (data.augment: Augment.spec()); None: none

    def preprocess(self):
        """data.Preprocess of these statistics and augmentation (what block 1 and the trainer apply)."""
        from sedona_runtime.data import Preprocess
        from sedona_runtime.data.augment import augment_from_spec

        return Preprocess(tuple(self.mean), tuple(self.std), augment_from_spec(self.augment))


@dataclass
class RunSpec:
    """A resolved run. `train` has every None filled (steps from epochs, intervals, rates, the image size,
    the model's classes, channels and stem from the data, absolute paths, import roots; `train.decoupling`
    and `train.retarget` only record what was asked); `decoupling` is the resolved Decoupling the network is
    cut by; `input` how images become its input (None only for a run written before the spec, version 1);
    `classes` the data's class names in label order (None where it has none); `data_note` says what the data was.
    """

    train: TrainConfig
    decoupling: Any                     # decoupling.Decoupling
    input: InputSpec | None
    classes: list[str] | None = None
    data_note: str = ""
    version: int = SPEC_VERSION

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W): the recorded one, or (model channels, image size, image size) for a version-1 run."""
        if self.input is not None:
            return tuple(int(s) for s in self.input.shape)  # type: ignore[return-value]
        return (self.train.model.in_channels, self.train.data.size, self.train.data.size)

    def to_json(self) -> dict:
        """config.json's content (the pipeline adds its own "pipeline" section beside it). A spec read from an
        older config.json keeps its version (and its unknown input): what the resume rules compare it by."""
        return {"spec_version": self.version, "train": to_dict(self.train), "decoupling": self.decoupling.to_json(),
                "input": dataclasses.asdict(self.input) if self.input is not None else None,
                "classes": self.classes, "data_note": self.data_note}

    @classmethod
    def from_json(cls, data: dict, *, where: str = "config.json") -> "RunSpec":
        """The spec a config.json holds, of this version or an older one (version 1 is upgraded: its
        train.data.batch_size copy is dropped, its input statistics are unknown). Other top-level keys (the
        pipeline's section) are left to their readers. SedonaError naming the file for anything malformed."""
        from sedona_runtime.decoupling import Decoupling

        if not isinstance(data, dict) or not isinstance(data.get("train"), dict) or "decoupling" not in data:
            raise SedonaError(f"{where} is not a training run's config (no train and decoupling sections)")
        version = data.get("spec_version", 1)
        if version not in (1, SPEC_VERSION):
            raise SedonaError(f"{where}: spec_version {version!r} is not one this version of sedona-runtime reads "
                              f"(1 or {SPEC_VERSION}); upgrade sedona-runtime")
        train = from_dict(TrainConfig, data["train"], where=f"{where}: train")
        if version == 1:
            _upgrade(train)
        dec = Decoupling.from_json(data["decoupling"], where=f"{where}: decoupling")
        raw = data.get("input")
        try:
            inp = InputSpec(**raw) if isinstance(raw, dict) else None
        except TypeError as exc:
            raise SedonaError(f"{where}: input: {exc}") from None
        if version >= 2 and inp is None:
            raise SedonaError(f"{where}: the input section is missing")
        classes = data.get("classes")
        return cls(train, dec, inp, list(classes) if isinstance(classes, list) else None,
                   str(data.get("data_note") or ""), version)


def _upgrade(train: TrainConfig) -> None:
    """A version-1 config in today's terms: its train.data.batch_size copy dropped (train.batch_size is the
    one), its paths absolute (runs written before paths were resolved once hold them as typed: taken from here)."""
    import os

    from sedona_runtime.utils.imports import absolute_spec

    train.data.batch_size = None
    train.model.arch = absolute_spec(train.model.arch)
    train.data.dataset = absolute_spec(train.data.dataset)
    if train.data.data_dir:
        train.data.data_dir = os.path.abspath(train.data.data_dir)


def read_spec(run_dir, config: dict | None = None) -> RunSpec:
    """The RunSpec of run directory `run_dir` (a training.run_dir.RunDir or a path), from its config.json (or
    `config`, its content read already). SedonaError when it is missing, unreadable or not a training run's."""
    from sedona_runtime.training.run_dir import RunDir

    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    return RunSpec.from_json(run.read_config() if config is None else config, where=str(run.config))
