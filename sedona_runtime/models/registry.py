"""Model configuration and the name -> builder registry of the layered model zoo."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from sedona_runtime.utils.errors import SedonaError

if TYPE_CHECKING:  # pragma: no cover - import only for annotations
    from sedona_runtime.models.layered import LayeredNet

STEMS = ("cifar", "tiny_imagenet", "imagenet")


@dataclass
class ModelConfig:
    """Everything needed to build a network of the zoo; round-trips through JSON."""

    # Registered name (small, small_resnet, vgg19, resnet50, resnet101, resnet152), or a user network's import
    # path MODULE:CALLABLE, called as CALLABLE(num_classes=N) (models.wrap.build_user_model): then the network
    # is taken as it is and stem, width and in_channels do not apply.
    arch: str = "small"
    num_classes: int = 10
    stem: str = "cifar"  # "cifar" | "tiny_imagenet" | "imagenet"
    width: float | None = None  # channel width multiplier; None: the data set's default (training.config), 1.0
    in_channels: int = 3
    # For an import path: the directory put on sys.path before importing it (utils.imports.import_root), so
    # that block processes and later commands started from another directory import the same module.
    import_root: str | None = None


Builder = Callable[[ModelConfig], "LayeredNet"]
_MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering `fn(cfg) -> LayeredNet` under `name`."""

    def deco(fn: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Registered architecture names, sorted."""
    _load_builtin()
    return sorted(_MODELS)


def validate_model_config(cfg: ModelConfig) -> None:
    """Raise SedonaError naming the bad field of `cfg`."""
    from sedona_runtime.utils.imports import is_import_path

    _load_builtin()
    user = is_import_path(cfg.arch)
    if not user and cfg.arch not in _MODELS:
        raise SedonaError(f"model.arch: unknown architecture {cfg.arch!r} (known: {', '.join(sorted(_MODELS))}; "
                          "or a network by import path, MODULE:CALLABLE)")
    if cfg.import_root is not None and not isinstance(cfg.import_root, str):
        raise SedonaError(f"model.import_root: must be a directory path or null, got {cfg.import_root!r}")
    if cfg.stem not in STEMS:
        raise SedonaError(f"model.stem: unknown stem {cfg.stem!r} (known: {', '.join(STEMS)})")
    if not isinstance(cfg.num_classes, int) or isinstance(cfg.num_classes, bool) or cfg.num_classes < 1:
        raise SedonaError(f"model.num_classes: must be a positive integer, got {cfg.num_classes!r}")
    if cfg.width is not None and (not isinstance(cfg.width, (int, float)) or isinstance(cfg.width, bool)
                                  or not 0 < cfg.width <= 16):
        raise SedonaError(f"model.width: must be a number in (0, 16], got {cfg.width!r}")
    if not isinstance(cfg.in_channels, int) or isinstance(cfg.in_channels, bool) or cfg.in_channels < 1:
        raise SedonaError(f"model.in_channels: must be a positive integer, got {cfg.in_channels!r}")
    if user and cfg.width not in (None, 1.0):
        raise SedonaError(f"model.width: applies to the built-in architectures only; {cfg.arch} is taken as it is "
                          f"(got width {cfg.width!r})")


def build_model(cfg: ModelConfig) -> "LayeredNet":
    """Build the registered network `cfg.arch`, or the user network its import path names (SedonaError for an
    unknown name, a bad field or a failing import path)."""
    validate_model_config(cfg)
    if cfg.arch not in _MODELS:  # an import path (validated above)
        from sedona_runtime.models.wrap import build_user_model

        return build_user_model(cfg.arch, cfg.num_classes, cfg.import_root)
    if cfg.width is None:  # unset: the full width
        cfg = dataclasses.replace(cfg, width=1.0)
    return _MODELS[cfg.arch](cfg)


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, at least 1 (truncation, as the reference code does)."""
    return max(1, int(channels * width))


def _load_builtin() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from sedona_runtime.models import resnet, small, vgg  # noqa: F401
