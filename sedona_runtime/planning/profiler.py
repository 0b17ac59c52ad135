"""Measure a per-layer, per-head training-step profile on one device, in the planner's profile schema."""
from __future__ import annotations

import logging
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


class _Timer:
    """Median wall time of each phase over `iters` steps after `warmup` (CUDA synchronised per phase)."""

    def __init__(self, device: torch.device, warmup: int, iters: int) -> None:
        self.device, self.warmup, self.iters = device, warmup, iters

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, phases: Sequence[Callable[[], Any]]) -> list[float]:
        """Call phases[0], phases[1], ... in turn each step; each gets the previous one's result."""
        samples: list[list[float]] = [[] for _ in phases]
        for step in range(self.warmup + self.iters):
            value = None
            for i, phase in enumerate(phases):
                self._sync()
                start = time.perf_counter()
                value = phase() if i == 0 else phase(value)
                self._sync()
                if step >= self.warmup:
                    samples[i].append(time.perf_counter() - start)
        return [statistics.median(s) for s in samples]


def _time_module(timer: _Timer, fwd: Callable[[], Tensor], params: list[nn.Parameter],
                 grad: Tensor | None = None) -> dict[str, float]:
    """fwd_s / bwd_s / opt_s of one module: forward, backward (from `grad` for a non-scalar output), SGD step."""
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None

    def backward(out: Tensor) -> None:
        out.backward(grad)

    def step(_: None) -> None:
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    f, b, o = timer.run([fwd, backward, step])
    return {"fwd_s": f, "bwd_s": b, "opt_s": o}


def measure_profile(model_cfg: Any, input_shape: Sequence[int], batch_size: int, head_pool: Sequence[str], *,
                    device: str | torch.device = "cpu", warmup: int = 2, iters: int = 5, seed: int = 0) -> dict:
    """Time every layer, the classifier, and every head of `head_pool` at every boundary.

    Each layer runs on a detached copy of its real input (requiring grad except for layer 1, as
    inside end-to-end backprop), so its backward includes the input gradient; the first layer of
    a later greedy block skips that, which makes the profile slightly pessimistic for blocks.
    Heads are timed through `local_loss` + backward into their input; heads of the same kind on
    equal feature shapes share one measurement.
    """
    from sedona_runtime.heads.base import HeadSpec
    from sedona_runtime.heads.registry import build_head, head_width_for
    from sedona_runtime.models.registry import build_model

    if batch_size < 1 or iters < 1 or warmup < 0:
        raise SedonaError(f"profile: batch size and iterations must be positive (got {batch_size}, {iters})")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SedonaError("profile: CUDA was asked for but is not available")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(model_cfg).to(dev).train()
    x = torch.randn((batch_size, *input_shape), generator=gen).to(dev)
    y = torch.randint(model_cfg.num_classes, (batch_size,), generator=gen).to(dev)
    timer = _Timer(dev, warmup, iters)
    layers, feats = [], []
    for index, layer in enumerate(model.layers, start=1):
        inp = x.detach().requires_grad_(index > 1)
        with torch.no_grad():
            out = layer(inp)
        grad = torch.randn(out.shape, generator=gen).to(dev)  # a dense upstream gradient, as in training
        layers.append({"index": index, **_time_module(timer, lambda: layer(inp), list(layer.parameters()), grad)})
        x = out
        feats.append(x)
    classifier_in = feats[-1].detach().requires_grad_(True)
    classifier = _time_module(timer, lambda: model.classifier.local_loss(classifier_in, y, 0.0)[0],
                              list(model.classifier.parameters()))
    heads: dict[str, list[dict]] = {h: [] for h in head_pool}
    cache: dict[tuple, dict[str, float]] = {}
    width = head_width_for(model_cfg.stem)
    for b, feat in enumerate(feats[:-1]):
        c, s = int(feat.shape[1]), int(feat.shape[2])
        nc = model.layer_head_channels(b)
        inp = feat.detach().requires_grad_(True)
        for name in head_pool:
            key = (name, c, s, nc)
            if key not in cache:
                head = build_head(name, HeadSpec(c, s, model_cfg.num_classes, width=width, nc=nc)).to(dev).train()
                cache[key] = _time_module(timer, lambda: head.local_loss(inp, y, 0.0)[0], list(head.parameters()))
            heads[name].append({"after": b + 1, **cache[key]})
        log.debug("profiled boundary %d/%d", b + 1, len(feats) - 1)
    return {
        "device": _device_name(dev), "arch": model_cfg.arch, "batch_size": batch_size,
        "input_shape": list(input_shape), "torch": torch.__version__, "warmup": warmup, "iters": iters,
        "layers": layers, "classifier": classifier, "heads": heads,
        "boundary_bytes": [float(f.numel() * f.element_size()) for f in feats[:-1]],
    }
