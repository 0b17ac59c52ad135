"""How an item crosses a point-to-point edge: a fixed-size header message, then its tensors one by one.

The header carries the item pickled with every tensor replaced by a `TensorSpec` (dtype, shape), so
the receiver can allocate the buffers and post its receives before any tensor moves (the shape and
metadata exchange of torch.distributed.pipelining, per item instead of once: evaluation batches and
markers have their own shapes). Headers are host tensors on the gloo group; tensors go on the edge's
data group (NCCL for tensors that leave one GPU for another, gloo for everything else).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import torch

from sedona_runtime.pipeline.tree import map_leaves, map_tensors

HEADER_BYTES = 1024        # one header message; a longer pickled item sends its tail as a second message
_LEN_BYTES = 8


@dataclass(frozen=True)
class TensorSpec:
    """Where tensor `index` of an item goes, and what to allocate for it (`cuda`: it left a GPU)."""

    index: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    cuda: bool = False


def encode(item: Any) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """(header uint8[HEADER_BYTES], tail uint8[n] or None, the item's tensors in order)."""
    found: list[torch.Tensor] = []

    def _spec(t: torch.Tensor) -> Any:
        found.append(t)
        return TensorSpec(len(found) - 1, t.dtype, tuple(t.shape), t.is_cuda)

    body = pickle.dumps(map_tensors(item, _spec), protocol=pickle.HIGHEST_PROTOCOL)
    data = len(body).to_bytes(_LEN_BYTES, "little") + body
    header = torch.zeros(HEADER_BYTES, dtype=torch.uint8)
    head = data[:HEADER_BYTES]
    header[: len(head)] = torch.frombuffer(bytearray(head), dtype=torch.uint8)
    tail = None
    if len(data) > HEADER_BYTES:
        tail = torch.frombuffer(bytearray(data[HEADER_BYTES:]), dtype=torch.uint8)
    # The sender made its tensors contiguous on the producer's thread, before `ready`
    # (cuda_handoff.contiguous_before_send): a copy here would run on this thread's stream, unordered
    # with the send. CPU tensors have no such race; a strided CUDA one is a caller's bug.
    for t in found:
        if t.is_cuda and not t.is_contiguous():
            raise ValueError("wire.encode: a CUDA tensor must be made contiguous before its ready event")
    return header, tail, [t.contiguous() for t in found]


def tail_bytes(header: torch.Tensor) -> int:
    """How many bytes of the pickled item follow the header in a second message."""
    n = int.from_bytes(bytes(header[:_LEN_BYTES].tolist()), "little")
    return max(0, _LEN_BYTES + n - HEADER_BYTES)


def decode(header: torch.Tensor, tail: torch.Tensor | None) -> tuple[Any, list[TensorSpec]]:
    """(the item with TensorSpec placeholders, the specs in tensor order)."""
    n = int.from_bytes(bytes(header[:_LEN_BYTES].tolist()), "little")
    data = header.numpy().tobytes()
    if tail is not None:
        data += tail.numpy().tobytes()
    skeleton = pickle.loads(data[_LEN_BYTES:_LEN_BYTES + n])
    specs: list[TensorSpec] = []
    _collect(skeleton, specs)
    return skeleton, sorted(specs, key=lambda s: s.index)


def fill(skeleton: Any, received: list[torch.Tensor]) -> Any:
    """The item, every TensorSpec replaced by its received tensor."""
    return map_leaves(skeleton, _is_spec, lambda spec: received[spec.index])


def _collect(obj: Any, out: list[TensorSpec]) -> None:
    map_leaves(obj, _is_spec, lambda spec: out.append(spec) or spec)


def _is_spec(obj: Any) -> bool:
    return isinstance(obj, TensorSpec)
