"""What every CLI shares: a parser whose errors are one line, the `main` wrapper, the cost-count presets."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable

from sedona_runtime.utils.errors import SedonaError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is a SedonaError: `error: <message>` and exit 2, no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SedonaError(message)


def run_main(run: Callable[[list[str] | None], int], argv: list[str] | None,
             interrupted: str = "interrupted", on_error: Callable[[str], None] | None = None) -> int:
    """Call `run(argv)` the way every CLI's `main` does: bad input is one `error:` line on stderr and its
    exit code (2), Ctrl-C prints `interrupted` and returns 130; never a traceback for either. A SedonaError
    that is a notice rather than an error (a run that stopped cleanly on a signal, a finished run asked to
    resume) prints its line without `error:` and returns its own exit code. `on_error(line)` also receives
    the line (e.g. for torchrun's error file)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(argv)
    except SedonaError as exc:
        line = f"{exc.label}{exc}"
        print(line, file=sys.stderr)
        if on_error is not None:
            on_error(line)
        return exc.exit_code
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def apply_options(cfg: Any, args: argparse.Namespace, fields: dict[str, tuple[str | None, str]]) -> None:
    """Set every option that was given (not None) on its config field: option -> (section, field), section
    None being the top level. One --seed drives init, data split and batch order (cfg.seed, cfg.data.seed)."""
    for option, (section, name) in fields.items():
        value = getattr(args, option)
        if value is not None:
            setattr(getattr(cfg, section) if section else cfg, name, value)
    if getattr(args, "seed", None) is not None:
        cfg.seed = cfg.data.seed = args.seed


@dataclass(frozen=True)
class Preset:
    """The network stem, input size and class count a data set's costs are counted at."""

    stem: str
    image_size: int
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)


# Used by inspect and plan, which count costs without loading any data (digits count at CIFAR size).
PRESETS: dict[str, Preset] = {
    "digits": Preset("cifar", 32, 10),
    "cifar10": Preset("cifar", 32, 10),
    "cifar100": Preset("cifar", 32, 100),
    "tiny_imagenet": Preset("tiny_imagenet", 64, 200),
    "imagenet": Preset("imagenet", 224, 1000),
}


def dataset_option(text: str) -> str:
    """argparse type of --dataset: a built-in data set name or a data set function's import path."""
    from sedona_runtime.data.config import DATASETS
    from sedona_runtime.utils.imports import is_import_path

    if text in DATASETS or is_import_path(text):
        return text
    raise argparse.ArgumentTypeError(f"unknown data set {text!r} (known: {', '.join(DATASETS)}; or a data set "
                                     "function by import path, MODULE:CALLABLE)")


MODEL_HELP = ("a network by import path MODULE:CALLABLE (or FILE.py:CALLABLE), called as CALLABLE(num_classes=N): "
              "an nn.Sequential or list of modules, a torchvision ResNet/VGG or a LayeredNet "
              "(e.g. torchvision.models:resnet18)")
DATASET_HELP = ("data set: digits (default: embedded, no download), cifar10, cifar100, imagefolder, synthetic, or a "
                "function by import path MODULE:CALLABLE returning (train, val, test) torch Datasets")


def take_model_option(args: argparse.Namespace) -> None:
    """--model is --arch given an import path: one of the two at most."""
    model = getattr(args, "model", None)
    if model is None:
        return
    if getattr(args, "arch", None) is not None:
        raise SedonaError("give --arch (a built-in architecture) or --model (an import path), not both")
    from sedona_runtime.utils.imports import is_import_path

    if not is_import_path(model):
        raise SedonaError(f"--model {model!r}: expected MODULE:CALLABLE (e.g. my_pkg.nets:build); "
                          "built-in architectures go to --arch")
    args.arch, args.model = model, None  # taken: a second call (a CLI reusing another's) sees only --arch


def resolve_import_paths(model_cfg: Any = None, data_cfg: Any = None) -> None:
    """utils.imports.resolve_paths: import the user code a config names, record its import root, make its
    recorded paths absolute (a bad path is one clear line before anything runs)."""
    from sedona_runtime.utils.imports import resolve_paths

    resolve_paths(model_cfg, data_cfg)


def run_name(text: str) -> str:
    """A file-name-safe short name of an architecture or data set ('my_pkg.nets:build' -> 'nets.build')."""
    from sedona_runtime.utils.imports import is_import_path

    if is_import_path(text):
        module, attr = text.split(":")
        text = f"{module.removesuffix('.py').replace('/', '.').split('.')[-1]}.{attr}"
    return text.replace("/", "_").replace(":", "")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_warning(threads: int | None, processes: int = 1) -> str | None:
    """A one-line warning when `threads` torch threads in each of `processes` processes oversubscribe the
    cores (100 threads on 2 cores ran 12x slower, silently); None when they fit or are the default (0)."""
    cores = usable_cores()
    if not threads or threads * processes <= cores:
        return None
    each = f" in each of {processes} processes" if processes > 1 else ""
    return (f"warning: --threads {threads}{each} is more than the {cores} core{'s' if cores != 1 else ''} here: "
            "the CPU kernels will wait on each other and run many times slower")

