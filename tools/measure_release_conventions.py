"""Measure the sizes of three conventions of the SEDONA release that the paper does not state, each against
what this project computes (the paper's): label smoothing eps/(C-1), the heads' 1/softmax(alpha)[0] output
scale, and the outer step on the last inner training loss instead of Eq. 7's validation loss.

Runs without the release (each convention is a few lines of arithmetic restated here, from the release's
loss.py, module.py and sedona.py); small nets, random weights and data, float64, CPU:

    PYTHONPATH=. ./run python tools/measure_release_conventions.py [--json]
"""
from __future__ import annotations

import json
import math
import sys

import higher
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sedona_runtime.heads.registry import AUX_POOL, head_width_for
from sedona_runtime.models import ModelConfig, build_model
from sedona_runtime.search.bilevel import InnerSettings, inner_optimizer
from sedona_runtime.search.relaxation import RelaxedNet, mixing_weights, relax_model

EPS = 1e-5  # the release's EPS in sedona.py's dec_out_scale


def _cos(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def release_smoothing_loss(logits: Tensor, y: Tensor, eps: float) -> Tensor:
    """The release's SmoothCrossEntropyLoss: 1 - eps on the label, eps / (C - 1) on every other class."""
    c = logits.shape[-1]
    target = torch.full_like(logits, eps / (c - 1)).scatter_(1, y[:, None], 1.0 - eps)
    return -(target * F.log_softmax(logits, -1)).sum(-1).mean()


def label_smoothing(eps: float = 0.1, classes: tuple[int, ...] = (10, 100), batch: int = 256) -> dict:
    """Targets, optimal logit margin, and at random logits the loss and gradient against torch's eps/C form."""
    out = {}
    g = torch.Generator().manual_seed(0)
    for c in classes:
        logits = torch.randn(batch, c, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, c, (batch,), generator=g)
        ours = F.cross_entropy(logits, y, label_smoothing=eps)
        theirs = release_smoothing_loss(logits, y, eps)
        g_ours, = torch.autograd.grad(ours, logits)
        g_theirs, = torch.autograd.grad(theirs, logits)
        on, off = 1 - eps + eps / c, eps / c  # torch: eps/C on every class
        on_r, off_r = 1 - eps, eps / (c - 1)
        out[f"C={c}"] = {
            "torch_targets": [on, off], "release_targets": [on_r, off_r],
            # the margin (label logit - other logits) at which each loss is minimal: log(on / off)
            "optimal_margin": [math.log(on / off), math.log(on_r / off_r)],
            "loss_rel_diff": float((theirs - ours).abs().detach() / ours.detach()),
            "grad_cosine": _cos(g_ours, g_theirs),
            "grad_rel_diff": float((g_theirs - g_ours).norm() / g_ours.norm()),
        }
    return out


class ScaledHead(nn.Module):
    """The release's LocalLossBlock.get_loss with scale s: s * head(x / s)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head, self.s = head, 1.0

    def forward(self, x: Tensor) -> Tensor:
        return self.s * self.head(x / self.s) if self.s != 1.0 else self.head(x)


def _relaxed(arch: str, width: float, size: int, seed: int) -> RelaxedNet:
    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, width=width, stem="cifar", num_classes=10)
    model = build_model(cfg).double()
    net = relax_model(model, list(AUX_POOL), (3, size, size), 10, head_width_for("cifar"), 0.1).double()
    for pool in net.heads:
        for m, head in enumerate(pool):
            pool[m] = ScaledHead(head)
    return net


def _set_scale(net: RelaxedNet, alpha: Tensor | None) -> None:
    scales = [1.0] * len(net.heads) if alpha is None else (1.0 / (torch.softmax(alpha, -1)[:, 0] + EPS)).tolist()
    for pool, s in zip(net.heads, scales):
        for head in pool:
            head.s = float(s)


def _batch(size: int, n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def head_scale(arch: str = "vgg19", width: float = 0.25, size: int = 32, batch: int = 32) -> dict:
    """Per layer l: cosine of d L^l / d theta_l (the encoder's local gradient) with the release's head scale
    against without it, at alpha = 0 (the search's start: s = 2) and at the released alpha (s up to 5.5e6).

    The release's relaxed loss is the same Eq. 3 mixture with each head evaluated as s * head(a / s),
    s = 1 / (softmax(alpha_l)[0] + 1e-5); alpha at the released values comes from the decoupling file.
    """
    from sedona_runtime.decoupling import load_decoupling

    net = _relaxed(arch, width, size, seed=1)
    x, y = _batch(size, batch, seed=2)
    n = net.num_layers - 1
    released = torch.tensor(load_decoupling(f"{arch}_k2").alpha, dtype=torch.float64) if arch != "small" else None
    settings = {"alpha=0": torch.zeros(n, 2, dtype=torch.float64)}
    if released is not None:
        settings["released alpha"] = released
    out = {}
    for name, alpha in settings.items():
        grads = {}
        for mode in ("paper", "release"):
            _set_scale(net, alpha if mode == "release" else None)
            a_mix, b_mix = mixing_weights(alpha, torch.zeros(n, len(AUX_POOL), dtype=torch.float64))
            res = net(x, y, a_mix, b_mix)
            grads[mode] = [
                torch.cat([g.flatten() for g in torch.autograd.grad(res.local[l], list(net.layers[l].parameters()),
                                                                      retain_graph=True)])
                for l in range(n)
            ]
        cos = [_cos(a, b) for a, b in zip(grads["paper"], grads["release"])]
        out[name] = {"cosine_per_layer": cos, "min": min(cos), "max": max(cos),
                     "scale_range": [min(1 / (torch.softmax(alpha, -1)[:, 0] + EPS)).item(),
                                     max(1 / (torch.softmax(alpha, -1)[:, 0] + EPS)).item()]}
    _set_scale(net, None)
    return out


def outer_objective(arch: str = "small", width: float = 1.0, size: int = 32, batch: int = 32, steps: int = 5,
                    seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Cosine between d L_val(theta_T) / d(alpha, beta) (Eq. 7, what the project steps on) and the gradient of
    the last inner step's relaxed training loss L_train(theta_{T-1}) (what the release's diff_step steps on),
    at random weights, random (alpha, beta) near 0 and random batches, T unrolled SGD-momentum steps."""
    out = []
    for seed in seeds:
        net = _relaxed(arch, width, size, seed=10 + seed)
        n = net.num_layers - 1
        g = torch.Generator().manual_seed(100 + seed)
        alpha = (0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)).requires_grad_()
        beta = (0.1 * torch.randn(n, len(AUX_POOL), generator=g, dtype=torch.float64)).requires_grad_()
        batches = [_batch(size, batch, seed=1000 * seed + t) for t in range(steps)]
        val = _batch(size, batch, seed=1000 * seed + 999)
        opt = inner_optimizer(net, 0.01, InnerSettings())
        with higher.innerloop_ctx(net, opt, copy_initial_weights=True, track_higher_grads=True) as (fnet, diffopt):
            a_mix, b_mix = mixing_weights(alpha, beta)
            passes, last = [], None
            for xb, yb in batches:
                res = fnet(xb, yb, a_mix, b_mix)
                last = res.total
                diffopt.step(res.total)
                passes.append(res.mix)
            for mix in passes:
                mix.freeze()
            val_loss, _ = fnet.val_loss(*val)
            g_val = torch.autograd.grad(val_loss, [alpha, beta], retain_graph=True, allow_unused=True)
            g_train = torch.autograd.grad(last, [alpha, beta], allow_unused=True)
        flat = [torch.cat([(t if t is not None else torch.zeros_like(v)).flatten() for t, v in zip(gs, (alpha, beta))])
                for gs in (g_val, g_train)]
        out.append({"seed": seed, "cosine": _cos(*flat),
                    "cosine_alpha": _cos(g_val[0], g_train[0]) if g_train[0] is not None else 0.0,
                    "cosine_beta": _cos(g_val[1], g_train[1])})
    return {"arch": arch, "T": steps, "runs": out}


def main() -> int:
    """Run the three measurements and print them (plain text, or JSON with --json)."""
    torch.set_num_threads(1)
    result = {"label_smoothing": label_smoothing(), "head_scale_vgg19": head_scale(),
              "outer_objective_small": outer_objective()}
    if "--json" in sys.argv[1:]:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return 0
    for c, r in result["label_smoothing"].items():
        sys.stdout.write(f"label smoothing eps=0.1 {c}: targets torch {r['torch_targets']} release "
                         f"{r['release_targets']}; optimal margin {r['optimal_margin'][0]:.3f} vs "
                         f"{r['optimal_margin'][1]:.3f}; loss rel. diff {r['loss_rel_diff']:.2e}; grad cosine "
                         f"{r['grad_cosine']:.6f}, rel. diff {r['grad_rel_diff']:.2e}\n")
    for name, r in result["head_scale_vgg19"].items():
        cos = ", ".join(f"{c:.3f}" for c in r["cosine_per_layer"])
        sys.stdout.write(f"head scale, vgg19 0.25x, {name} (scale {r['scale_range'][0]:.3g}..{r['scale_range'][1]:.3g}): "
                         f"local-gradient cosine per layer {r['min']:.3f}..{r['max']:.3f} [{cos}]\n")
    for r in result["outer_objective_small"]["runs"]:
        sys.stdout.write(f"outer objective, small net, T=5, seed {r['seed']}: cosine(g_val, g_last_train) "
                         f"{r['cosine']:.3f} (alpha {r['cosine_alpha']:.3f}, beta {r['cosine_beta']:.3f})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
