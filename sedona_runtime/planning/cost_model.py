"""Per-layer, per-head and per-boundary training costs of one network, from FLOPs or a measured profile."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.io import atomic_write_json

# When costs come from multiply-add counts, a layer's backward pass is taken as twice its forward:
# one product for the gradient w.r.t. the input, one for the gradient w.r.t. the weights, each
# costing about as many multiply-adds as the forward. So a training step costs 3x the forward.
BACKWARD_FACTOR = 2.0


@dataclass
class CostModel:
    """Training-step cost of every piece a block can be made of, in one `unit` ("s" or "macs").

    layer_cost[l]        forward + backward (+ optimizer) cost of layer l+1 (0-based list)
    head_cost[h][b]      forward + backward (+ optimizer) cost of head h attached after layer b+1
                         (b = 0..L-2, the boundary alpha[b] scores); None: not available there
    classifier_cost      the same for the network's own classifier (the last block's head)
    transfer_cost[b]     cost of moving the activation of boundary b to the next device, paid
                         by the block that starts after it (0 where not modelled)
    """

    arch: str
    num_layers: int
    unit: str
    layer_cost: list[float]
    head_cost: dict[str, list[float | None]]
    classifier_cost: float
    transfer_cost: list[float] = field(default_factory=list)
    boundary_bytes: list[float] | None = None
    transfer_bytes_per_s: float | None = None
    device: str = ""
    batch_size: int | None = None
    input_shape: list[int] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        L = self.num_layers
        if not isinstance(L, int) or L < 1:
            raise SedonaError(f"cost model: num_layers must be a positive integer, got {L!r}")
        if not self.transfer_cost:
            self.transfer_cost = [0.0] * (L - 1)
        check_costs("cost model: layer_cost", self.layer_cost, L, allow_none=False)
        check_costs("cost model: transfer_cost", self.transfer_cost, L - 1, allow_none=False)
        if not isinstance(self.head_cost, dict):
            raise SedonaError("cost model: head_cost must map head names to per-boundary costs")
        for name, costs in self.head_cost.items():
            check_costs(f"cost model: head_cost[{name}]", costs, L - 1, allow_none=True)
        check_costs("cost model: classifier_cost", [self.classifier_cost], 1, allow_none=False)

    def head_at(self, head: str, after: int) -> float:
        """Cost of `head` attached after 1-based layer `after` (1..L-1)."""
        costs = self.head_cost.get(head)
        if costs is None:
            known = ", ".join(sorted(self.head_cost)) or "none"
            raise SedonaError(f"cost model has no costs for head {head!r} (known: {known})")
        if not 1 <= after <= self.num_layers - 1:
            raise SedonaError(f"head {head!r} after layer {after}: boundaries are 1..{self.num_layers - 1}")
        cost = costs[after - 1]
        if cost is None:
            raise SedonaError(f"cost model has no cost for head {head!r} after layer {after}")
        return cost

    def block_cost(self, first: int, last: int, head: str | None) -> float:
        """Step cost of a block of 1-based layers first..last with `head` (None: the classifier).

        The single definition every planner path uses, summed in one fixed order (input
        transfer, layers first..last, head), so that the same block always gets the same float.
        """
        if not 1 <= first <= last <= self.num_layers:
            raise SedonaError(f"block {first}..{last} is outside layers 1..{self.num_layers}")
        total = self.transfer_cost[first - 2] if first > 1 else 0.0
        for l in range(first - 1, last):
            total += self.layer_cost[l]
        if head is None:
            if last != self.num_layers:
                raise SedonaError(f"block {first}..{last}: only the last block may use the classifier")
            total += self.classifier_cost
        else:
            total += self.head_at(head, last)
        return total

    def baseline_cost(self) -> float:
        """Step cost of end-to-end backprop on one device: every layer plus the classifier."""
        total = 0.0
        for c in self.layer_cost:
            total += c
        return total + self.classifier_cost

    # ---- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "cost model") -> "CostModel":
        if not isinstance(data, Mapping):
            raise SedonaError(f"{where}: expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SedonaError(f"{where}: unknown field(s) {', '.join(unknown)}")
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise SedonaError(f"{where}: missing field(s) {', '.join(missing)}")
        return cls(**dict(data))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CostModel":
        return cls.from_dict(read_json(path), where=str(path))


def check_costs(where: str, values: Any, n: int, *, allow_none: bool) -> None:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise SedonaError(f"{where}: expected a list of {n} numbers, got {got}")
    for i, v in enumerate(values):
        if v is None and allow_none:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise SedonaError(f"{where}[{i}]: expected a finite non-negative number, got {v!r}")


def read_json(path: str | Path) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise SedonaError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SedonaError(f"{path}: cannot read JSON ({exc})") from None


def transfer_costs(boundary_bytes: Sequence[float] | None, bytes_per_s: float | None,
                   num_layers: int, *, scale: float = 1.0) -> list[float]:
    """Per-boundary transfer cost bytes / bandwidth (times `scale` to convert seconds to the unit)."""
    if boundary_bytes is None or bytes_per_s is None:
        return [0.0] * (num_layers - 1)
    if not (isinstance(bytes_per_s, (int, float)) and bytes_per_s > 0):
        raise SedonaError(f"transfer_bytes_per_s must be a positive number, got {bytes_per_s!r}")
    check_costs("boundary_bytes", list(boundary_bytes), num_layers - 1, allow_none=False)
    return [float(b) / bytes_per_s * scale for b in boundary_bytes]


def from_layer_macs(arch: str, layer_macs: Sequence[float], head_macs: Mapping[str, Sequence[float | None]],
                    classifier_macs: float, *, batch_size: int = 1,
                    boundary_bytes: Sequence[float] | None = None,
                    transfer_bytes_per_s: float | None = None,
                    device_macs_per_s: float | None = None, source: str = "") -> CostModel:
    """A cost model from per-sample forward multiply-adds: step cost = (1 + BACKWARD_FACTOR) x fwd x batch.

    The unit is "macs" unless `device_macs_per_s` is given, in which case costs are seconds and a
    boundary transfer (bytes / `transfer_bytes_per_s`) can be added to them; transfers need a
    common unit, so asking for them without a device rate is an error.
    """
    L = len(layer_macs)
    per_step = (1.0 + BACKWARD_FACTOR) * batch_size
    scale = 1.0 / device_macs_per_s if device_macs_per_s else 1.0
    if transfer_bytes_per_s is not None and not device_macs_per_s:
        raise SedonaError("a transfer bandwidth needs a device rate (MACs/s) to share a unit with compute")
    heads = {name: [None if m is None else float(m) * per_step * scale for m in macs]
             for name, macs in head_macs.items()}
    return CostModel(
        arch=arch, num_layers=L, unit="s" if device_macs_per_s else "macs",
        layer_cost=[float(m) * per_step * scale for m in layer_macs], head_cost=heads,
        classifier_cost=float(classifier_macs) * per_step * scale,
        transfer_cost=transfer_costs(boundary_bytes, transfer_bytes_per_s, L),
        boundary_bytes=None if boundary_bytes is None else [float(b) for b in boundary_bytes],
        transfer_bytes_per_s=transfer_bytes_per_s, batch_size=batch_size,
        device=f"{device_macs_per_s:g} MAC/s (assumed)" if device_macs_per_s else "",
        source=source or f"multiply-adds x {1.0 + BACKWARD_FACTOR:g} (forward + backward) x batch {batch_size}",
    )


def from_flops(model_cfg: Any, input_shape: Sequence[int], batch_size: int, head_pool: Sequence[str], *,
               transfer_bytes_per_s: float | None = None, device_macs_per_s: float | None = None,
               bytes_per_element: int = 4) -> CostModel:
    """A cost model from the static multiply-add counts of `model_cfg` (sedona_runtime.analysis).

    Every head in `head_pool` gets a cost at every boundary; boundary activation bytes are
    batch x C x H x W x `bytes_per_element` (fp32 by default), used only with a bandwidth and a
    device rate (see from_layer_macs).
    """
    from sedona_runtime.analysis.costs import model_costs  # torch-heavy: only when asked for

    shape = tuple(int(s) for s in input_shape)
    costs = model_costs(model_cfg, shape, heads=list(head_pool))
    layers = costs["layers"]
    head_macs = {h: [layer["heads"][h]["flops"] for layer in layers[:-1]] for h in head_pool}
    boundary_bytes = [float(batch_size * layer["channels"] * layer["size"] ** 2 * bytes_per_element)
                      for layer in layers[:-1]]
    cm = from_layer_macs(
        model_cfg.arch, [layer["flops"] for layer in layers], head_macs, costs["classifier"]["flops"],
        batch_size=batch_size, boundary_bytes=boundary_bytes, transfer_bytes_per_s=transfer_bytes_per_s,
        device_macs_per_s=device_macs_per_s,
        source=(f"analysis multiply-adds of {model_cfg.arch} ({model_cfg.stem} stem, {model_cfg.num_classes} classes, "
                f"width {model_cfg.width or 1.0:g}) at input {list(shape)}, x{1.0 + BACKWARD_FACTOR:g} for forward + "
                f"backward, batch {batch_size}"),
    )
    cm.input_shape = list(shape)
    return cm
