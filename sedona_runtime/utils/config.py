"""JSON round-trip helpers for the dataclass configs used across the package."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Type, TypeVar

from sedona_runtime.utils.errors import SedonaError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """A dataclass (possibly nested) as a plain JSON-able dict."""
    return dataclasses.asdict(cfg)


def from_dict(cls: Type[T], data: dict, *, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields; unknown keys are an error."""
    if not isinstance(data, dict):
        raise SedonaError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SedonaError(f"{where}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for name, value in data.items():
        ftype = hints[name]
        sub = _dataclass_type(ftype, cls)
        kwargs[name] = from_dict(sub, value, where=f"{where}.{name}") if sub and isinstance(value, dict) else value
    return cls(**kwargs)


def _dataclass_type(ftype: Any, owner: type) -> type | None:
    if isinstance(ftype, str):
        import sys

        ftype = getattr(sys.modules[owner.__module__], ftype, None)
    return ftype if dataclasses.is_dataclass(ftype) else None


def dumps(cfg: Any) -> str:
    """A dataclass config as indented JSON text."""
    return json.dumps(to_dict(cfg), indent=2)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {"a.b.c": value}: settings compared key by key name the exact field."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
