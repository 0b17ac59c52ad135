"""Resolve a decoupling spec (file, shipped name, backprop, dgl:K, predsim:K, sedona:K) for a model."""
from __future__ import annotations

import re
from pathlib import Path

from sedona_runtime.decoupling.baselines import BASELINE_HEADS, backprop_decoupling, baseline_decoupling
from sedona_runtime.decoupling.discretize import rediscretize
from sedona_runtime.decoupling.retarget import retarget
from sedona_runtime.decoupling.schema import Decoupling, read_decoupling, validate_for
from sedona_runtime.utils.errors import SedonaError

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
_KSPEC = re.compile(r"^(?P<name>[a-z]+):(?P<k>.*)$")


def is_spec(text: str) -> bool:
    """True for the decouplings built for a model rather than read from a file: backprop, NAME:K."""
    return text == "backprop" or bool(_KSPEC.match(text))


def list_shipped() -> list[str]:
    """Names of the shipped decouplings (e.g. "resnet152_k4"), sorted."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))


def shipped_path(name: str) -> Path | None:
    """The shipped file for a bare name ("resnet152_k4" or "resnet152_k4.json"), or None."""
    if "/" in name or "\\" in name:
        return None
    stem = name[:-5] if name.endswith(".json") else name
    path = SHIPPED_DIR / f"{stem}.json"
    return path if path.is_file() else None


def load_decoupling(path_or_name: str) -> Decoupling:
    """Load a decoupling file; a bare name that is not an existing file resolves to shipped/<name>.json.

    An existing path wins over a shipped name, so a local edited copy can shadow a shipped file.
    """
    path = Path(path_or_name)
    if path.is_file():
        return read_decoupling(path)
    shipped = shipped_path(path_or_name)
    if shipped is not None:
        dec = read_decoupling(shipped)
        dec.origin = f"shipped decoupling {shipped.name}"
        return dec
    if is_spec(path_or_name):
        if path_or_name != "backprop":
            _method_and_k(path_or_name)  # a malformed spec says what is wrong with it
        raise SedonaError(f"decoupling {path_or_name!r} is built for a given network, not read from a file: "
                          "name the architecture too (--arch)")
    raise SedonaError(
        f"{path_or_name}: no such decoupling file, and not a shipped name (shipped: {', '.join(list_shipped())}; "
        f"also backprop, dgl:K, predsim:K, sedona:K)"
    )


def _method_and_k(spec: str) -> tuple[str, int]:
    """(method, K) of a NAME:K spec; SedonaError for an unknown method or a K that is not an integer."""
    m = _KSPEC.match(spec)
    if m is None:
        raise SedonaError(f"decoupling {spec!r}: expected backprop, dgl:K, predsim:K or sedona:K")
    name, text = m.group("name"), m.group("k")
    if name not in BASELINE_HEADS and name != "sedona":
        raise SedonaError(f"decoupling {spec!r}: unknown method {name!r} (known: dgl, predsim, sedona)")
    try:
        return name, int(text)
    except ValueError:
        raise SedonaError(f"decoupling {spec!r}: K must be a whole number of blocks (e.g. {name}:4), "
                          f"got {text!r}") from None


def _parse_k(spec: str, num_layers: int) -> int:
    k = _method_and_k(spec)[1]
    if not 1 <= k <= num_layers:
        raise SedonaError(f"decoupling {spec!r}: K must be in 1..{num_layers} (the model's number of layers)")
    return k


def sedona_decoupling(arch: str, num_layers: int, K: int) -> Decoupling:  # noqa: N803
    """SEDONA's decoupling of `arch` at K blocks, re-derived from the alpha/beta of its shipped files."""
    files = sorted(SHIPPED_DIR.glob(f"{arch}_k*.json"))
    if not files:
        archs = sorted({n.rsplit("_k", 1)[0] for n in list_shipped()})
        raise SedonaError(
            f"sedona:{K}: no searched decoupling shipped for arch {arch!r} (shipped for: {', '.join(archs)}); "
            "run the search for it or pass a decoupling file"
        )
    base = read_decoupling(files[0])
    validate_for(base, arch, num_layers)
    dec = rediscretize(base, K, source=f"sedona:{K} re-derived from {files[0].name}: {base.source}")
    dec.origin = f"sedona:{K}"
    return dec


def resolve_decoupling(spec: str, arch: str, num_layers: int, *, allow_retarget: bool = False) -> Decoupling:
    """The decoupling named by `spec` for model `arch` with `num_layers` layers, validated against it.

    spec: "backprop" | "dgl:K" | "predsim:K" | "sedona:K" | a shipped name | a path to a decoupling file.
    With allow_retarget, a file made for another arch or layer count is mapped onto this model by
    `retarget` (proportional cut positions) instead of being rejected.
    """
    if not isinstance(spec, str) or not spec:
        raise SedonaError("decoupling: expected a file, a shipped name, backprop, dgl:K, predsim:K or sedona:K")
    if spec == "backprop":
        dec = backprop_decoupling(arch, num_layers)
    elif _KSPEC.match(spec) and not Path(spec).is_file():
        name, k = _method_and_k(spec)[0], _parse_k(spec, num_layers)
        if name in BASELINE_HEADS:
            dec = baseline_decoupling(name, arch, num_layers, k)
        else:
            dec = sedona_decoupling(arch, num_layers, k)
    else:
        dec = load_decoupling(spec)
        if allow_retarget:
            dec = retarget(dec, arch, num_layers)
    if not dec.origin:
        dec.origin = spec
    validate_for(dec, arch, num_layers)
    return dec
