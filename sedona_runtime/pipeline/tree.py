"""Walking the tensors inside a pipeline item (dataclasses, tuples, lists, dicts)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch


def map_leaves(obj: Any, is_leaf: Callable[[Any], bool], fn: Callable[[Any], Any]) -> Any:
    """`obj` with every leaf (is_leaf) inside it replaced by fn(leaf); containers are rebuilt, not mutated."""
    if is_leaf(obj):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_leaves(o, is_leaf, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: map_leaves(v, is_leaf, fn) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: map_leaves(getattr(obj, f.name), is_leaf, fn)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """`obj` with every tensor t inside it replaced by fn(t)."""
    return map_leaves(obj, lambda o: isinstance(o, torch.Tensor), fn)


def tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor inside `obj`, in the order map_tensors visits them."""
    found: list[torch.Tensor] = []
    map_tensors(obj, lambda t: found.append(t) or t)
    return found
