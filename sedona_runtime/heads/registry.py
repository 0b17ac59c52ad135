"""Name -> builder registry of auxiliary heads, and the SEDONA head pool."""
from __future__ import annotations

from typing import Callable

from sedona_runtime.heads.base import Head, HeadSpec
from sedona_runtime.utils.errors import SedonaError

AUX_POOL = ("aux1", "aux2", "aux3", "aux4")

HeadBuilder = Callable[[HeadSpec], Head]
_HEADS: dict[str, HeadBuilder] = {}


def register_head(name: str) -> Callable[[HeadBuilder], HeadBuilder]:
    """Decorator registering `fn(spec) -> Head` under `name`."""

    def deco(fn: HeadBuilder) -> HeadBuilder:
        if name in _HEADS:
            raise ValueError(f"head {name!r} registered twice")
        _HEADS[name] = fn
        return fn

    return deco


def list_heads() -> list[str]:
    """Registered head names: the SEDONA pool first, then the baselines' heads."""
    _load_builtin()
    pool = [h for h in AUX_POOL if h in _HEADS]
    return pool + sorted(set(_HEADS) - set(pool))


def build_head(name: str, spec: HeadSpec) -> Head:
    """Build head `name` for a layer output described by `spec` (SedonaError for bad input)."""
    _load_builtin()
    if name not in _HEADS:
        raise SedonaError(f"unknown head {name!r} (known: {', '.join(list_heads())})")
    for field in ("in_channels", "in_size", "num_classes", "width"):
        value = getattr(spec, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SedonaError(f"head {name}: {field} must be a positive integer, got {value!r}")
    for field in ("nc", "pred_features"):
        value = getattr(spec, field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise SedonaError(f"head {name}: {field} must be a positive integer, got {value!r}")
    return _HEADS[name](spec)


def head_width_for(stem: str) -> int:
    """Head width of the paper: 512 at CIFAR scale, 2048 at Tiny-ImageNet/ImageNet scale."""
    if stem == "cifar":
        return 512
    if stem in ("tiny_imagenet", "imagenet"):
        return 2048
    raise SedonaError(f"unknown stem {stem!r} (known: cifar, tiny_imagenet, imagenet)")


def _load_builtin() -> None:
    # Importing the head modules runs their @register_head decorators.
    from sedona_runtime.heads import aux, mlp_sr, predsim  # noqa: F401
