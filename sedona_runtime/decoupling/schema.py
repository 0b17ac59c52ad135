"""The decoupling file format (sedona-decoupling/1): dataclasses, JSON round trip, validation, load/save."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_text

FORMAT = "sedona-decoupling/1"
_TOP_FIELDS = ("format", "arch", "num_layers", "blocks", "alpha", "beta", "head_pool", "ranking", "source")
_REQUIRED = ("format", "arch", "num_layers", "blocks")
_BLOCK_FIELDS = ("first", "last", "head")


@dataclass
class BlockSpec:
    """Layers `first`..`last` (1-based, inclusive) trained together with auxiliary head `head`."""

    first: int
    last: int
    head: str | None  # None for the last block: it is trained by the network's own classifier


@dataclass
class Decoupling:
    """How a network of `num_layers` layers is cut into gradient-isolated blocks, and their heads."""

    arch: str
    num_layers: int
    blocks: list[BlockSpec]
    alpha: list[list[float]] | None = None  # [L-1][2] logits [local, backprop]; alpha[i]: boundary after layer i+1
    beta: list[list[float]] | None = None  # [L-1][M] logits over head_pool
    head_pool: list[str] | None = None
    source: str = ""
    # Boundaries ranked best first, each [layer, head] (layer: the 1-based layer the cut follows). It
    # decides before alpha/beta as far as it goes: the shipped files carry the paper's Tables 10-13 here,
    # because the released values tie at float32 precision where the tables still give an order.
    ranking: list[list[Any]] | None = None
    # Where this object came from (file path or spec string), used to name it in error messages.
    # Not part of the file format and ignored by ==.
    origin: str = field(default="", compare=False, repr=False)

    @property
    def K(self) -> int:  # noqa: N802 - K is the paper's name for the number of blocks
        """The number of blocks."""
        return len(self.blocks)

    @property
    def boundaries(self) -> list[int]:
        """The 1-based layers after which the network is cut (K-1 of them, ascending)."""
        return [b.last for b in self.blocks[:-1]]

    @property
    def heads(self) -> list[str]:
        """The auxiliary heads of blocks 1..K-1, in order."""
        return [b.head for b in self.blocks[:-1] if b.head is not None]

    def to_json(self) -> dict[str, Any]:
        """The file-format object (optional fields only when set)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "arch": self.arch,
            "num_layers": self.num_layers,
            "blocks": [{"first": b.first, "last": b.last, "head": b.head} for b in self.blocks],
        }
        for name in ("alpha", "beta", "head_pool"):
            value = getattr(self, name)
            if value is not None:
                out[name] = [list(v) for v in value] if name != "head_pool" else list(value)
        if self.ranking is not None:
            out["ranking"] = [[int(layer), head] for layer, head in self.ranking]
        if self.source:
            out["source"] = self.source
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str = "decoupling") -> Decoupling:
        """Parse and structurally validate a file-format object; errors name `where` and the problem."""
        dec = _parse(data, where)
        validate(dec)
        return dec


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _parse(data: Any, where: str) -> Decoupling:
    if not isinstance(data, dict):
        raise SedonaError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for name in _REQUIRED:
        if name not in data:
            raise SedonaError(f"{where}: missing field {name!r}")
    unknown = sorted(set(data) - set(_TOP_FIELDS))
    if unknown:
        raise SedonaError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    if data["format"] != FORMAT:
        raise SedonaError(f"{where}: format must be {FORMAT!r}, got {data['format']!r}")
    if not isinstance(data["arch"], str) or not data["arch"]:
        raise SedonaError(f"{where}: 'arch' must be a non-empty string, got {data['arch']!r}")
    if not _is_int(data["num_layers"]) or data["num_layers"] < 1:
        raise SedonaError(f"{where}: 'num_layers' must be a positive integer, got {data['num_layers']!r}")
    if not isinstance(data["blocks"], list) or not data["blocks"]:
        raise SedonaError(f"{where}: 'blocks' must be a non-empty list")
    blocks = [_parse_block(b, f"{where}: blocks[{i}]") for i, b in enumerate(data["blocks"])]
    source = data.get("source", "")
    if not isinstance(source, str):
        raise SedonaError(f"{where}: 'source' must be a string")
    head_pool = data.get("head_pool")
    if head_pool is not None and (
        not isinstance(head_pool, list) or not head_pool or not all(isinstance(h, str) for h in head_pool)
    ):
        raise SedonaError(f"{where}: 'head_pool' must be a non-empty list of head names")
    return Decoupling(
        arch=data["arch"],
        num_layers=data["num_layers"],
        blocks=blocks,
        alpha=_parse_matrix(data.get("alpha"), f"{where}: 'alpha'"),
        beta=_parse_matrix(data.get("beta"), f"{where}: 'beta'"),
        head_pool=head_pool,
        source=source,
        ranking=_parse_ranking(data.get("ranking"), f"{where}: 'ranking'"),
        origin=where,
    )


def _parse_ranking(value: Any, where: str) -> list[list[Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(e, list) and len(e) == 2 and _is_int(e[0]) and isinstance(e[1], str) for e in value
    ):
        raise SedonaError(f"{where} must be a list of [layer, head] pairs (an integer and a head name)")
    return [[e[0], e[1]] for e in value]


def _parse_block(b: Any, where: str) -> BlockSpec:
    if not isinstance(b, dict):
        raise SedonaError(f"{where}: expected an object with first, last, head")
    for name in _BLOCK_FIELDS:
        if name not in b:
            raise SedonaError(f"{where}: missing field {name!r}")
    unknown = sorted(set(b) - set(_BLOCK_FIELDS))
    if unknown:
        raise SedonaError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    for name in ("first", "last"):
        if not _is_int(b[name]):
            raise SedonaError(f"{where}: {name!r} must be an integer layer index, got {b[name]!r}")
    if b["head"] is not None and not isinstance(b["head"], str):
        raise SedonaError(f"{where}: 'head' must be a head name or null, got {b['head']!r}")
    return BlockSpec(first=b["first"], last=b["last"], head=b["head"])


def _parse_matrix(value: Any, where: str) -> list[list[float]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise SedonaError(f"{where} must be a list of lists of numbers")
    for i, row in enumerate(value):
        if not all(_is_num(v) for v in row):
            raise SedonaError(f"{where}[{i}] must contain finite numbers only")
    return [[float(v) for v in row] for row in value]


def _known_heads() -> list[str]:
    # Imported lazily: the head registry pulls in torch.nn modules that plain file handling does not need.
    from sedona_runtime.heads import list_heads

    return list_heads()


def validate(dec: Decoupling) -> None:
    """Check a decoupling on its own: contiguous blocks covering 1..L, heads, alpha/beta shapes."""
    where = dec.origin or f"decoupling for {dec.arch}"
    L = dec.num_layers  # noqa: N806 - the paper's name
    if not dec.blocks:
        raise SedonaError(f"{where}: has no blocks")
    expect = 1
    for i, b in enumerate(dec.blocks):
        if b.first > b.last:
            raise SedonaError(f"{where}: block {i + 1} has first layer {b.first} after its last layer {b.last}")
        if i == 0 and b.first != 1:
            raise SedonaError(f"{where}: the first block must start at layer 1, got {b.first}")
        if b.first < expect:
            raise SedonaError(f"{where}: block {i + 1} (layers {b.first}..{b.last}) overlaps the previous block")
        if b.first > expect:
            raise SedonaError(f"{where}: layers {expect}..{b.first - 1} are in no block (gap before block {i + 1})")
        expect = b.last + 1
    if expect - 1 != L:
        raise SedonaError(f"{where}: blocks cover layers 1..{expect - 1} but the network has {L} layers")
    known = _known_heads()
    for i, b in enumerate(dec.blocks[:-1]):
        if b.head is None:
            raise SedonaError(f"{where}: block {i + 1} needs an auxiliary head (only the last block has none)")
        if b.head not in known:
            raise SedonaError(f"{where}: block {i + 1} has unknown head {b.head!r} (known: {', '.join(known)})")
    if dec.blocks[-1].head is not None:
        raise SedonaError(
            f"{where}: the last block must have head null (it uses the network's classifier), got {dec.blocks[-1].head!r}"
        )
    if dec.head_pool is not None:
        for h in dec.head_pool:
            if h not in known:
                raise SedonaError(f"{where}: head_pool has unknown head {h!r} (known: {', '.join(known)})")
    if dec.alpha is not None:
        _check_shape(dec.alpha, L - 1, 2, "alpha", where)
    if dec.beta is not None:
        if dec.head_pool is None:
            raise SedonaError(f"{where}: 'beta' needs 'head_pool' (the heads its columns refer to)")
        _check_shape(dec.beta, L - 1, len(dec.head_pool), "beta", where)
    if dec.ranking is not None:
        layers = [layer for layer, _ in dec.ranking]
        if len(set(layers)) != len(layers) or not all(1 <= x <= L - 1 for x in layers):
            raise SedonaError(f"{where}: 'ranking' must name distinct boundary layers in 1..{L - 1}, got {layers}")
        for _, h in dec.ranking:
            if h not in known:
                raise SedonaError(f"{where}: 'ranking' has unknown head {h!r} (known: {', '.join(known)})")


def _check_shape(m: list[list[float]], rows: int, cols: int, name: str, where: str) -> None:
    if len(m) != rows or any(len(r) != cols for r in m):
        got = f"{len(m)}x{sorted({len(r) for r in m})}" if m else "0 rows"
        raise SedonaError(
            f"{where}: {name!r} must be {rows}x{cols} (one row per boundary of the {rows + 1}-layer network), got {got}"
        )


def validate_for(dec: Decoupling, arch: str, num_layers: int) -> None:
    """Check that `dec` fits a model `arch` with `num_layers` layers (SedonaError naming the mismatch)."""
    where = dec.origin or f"decoupling for {dec.arch}"
    validate(dec)
    if dec.arch != arch:
        raise SedonaError(
            f"{where}: made for arch {dec.arch!r}, but the model is {arch!r} "
            "(use a decoupling for this arch, a baseline such as dgl:K, or retarget it explicitly)"
        )
    if dec.num_layers != num_layers:
        raise SedonaError(f"{where}: has {dec.num_layers} layers, but model {arch!r} has {num_layers}")


def read_decoupling(path: str | os.PathLike) -> Decoupling:
    """Load and structurally validate the decoupling file at `path`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SedonaError(f"{path}: decoupling file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SedonaError(f"{path}: cannot read decoupling file ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SedonaError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    return Decoupling.from_json(data, where=str(path))


def save_decoupling(dec: Decoupling, path: str | os.PathLike) -> Path:
    """Validate `dec` and write it to `path` atomically."""
    validate(dec)
    return atomic_write_text(path, dumps(dec))


def dumps(dec: Decoupling) -> str:
    """The file text: standard JSON laid out one block / one alpha or beta row per line, for reading."""
    items = []
    for key, value in dec.to_json().items():
        if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
            rows = ",\n".join(f"    {json.dumps(v)}" for v in value)
            items.append(f"  {json.dumps(key)}: [\n{rows}\n  ]")
        else:
            items.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(items) + "\n}\n"
