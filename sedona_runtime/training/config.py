"""TrainConfig: everything a training run needs, with the paper's per-data-set defaults (Appendix E.2)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sedona_runtime.data.config import DataConfig
from sedona_runtime.models import ModelConfig
from sedona_runtime.utils.errors import SedonaError


@dataclass
class TrainConfig:
    """A training run. Fields left `None` are filled by `resolve_defaults` from the data set and method."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    decoupling: str = "backprop"      # backprop | dgl:K | predsim:K | sedona:K | shipped name | file path
    retarget: bool = False            # allow a shipped decoupling of another arch (decoupling.retarget)
    steps: int | None = None          # iterations; one batch per step
    batch_size: int | None = None     # training batch size; resolved into data.batch_size
    optimizer: str | None = None      # "sgd" | "adam"
    lr: float | None = None           # initial learning rate, cosine-decayed to final_lr over `steps`
    final_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    label_smoothing: float | None = None  # 0.1 for backprop/DGL/SEDONA, 0 for PredSim (paper App. E.2)
    eval_interval: int | None = None  # validate every N steps (0: only at the end)
    checkpoint_interval: int | None = None  # checkpoint every N steps (0: only at the end)
    log_interval: int = 10            # metrics line every N steps
    eval_batch_size: int = 256
    amp: bool = True                  # torch.autocast + a GradScaler per block; CUDA only, ignored on CPU
    dtype: str = "float32"            # "float64" for exactness checks
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    seed: int = 0                     # model/head init and batch order
    out_dir: str = "runs/default"


# Per-data-set defaults. CIFAR and ImageNet-style values follow Appendix E.2; `digits` (8x8 images, ~1.6k
# training samples) is a demo: short, and a lower rate because the batches are small.
_DATASET_DEFAULTS: dict[str, dict] = {
    "digits": dict(steps=400, batch_size=64, lr=0.05, final_lr=0.0005, weight_decay=5e-4),
    "synthetic": dict(steps=50, batch_size=32, lr=0.05, final_lr=0.0005, weight_decay=5e-4),
    "cifar10": dict(steps=64_000, batch_size=128, lr=0.1, final_lr=0.001, weight_decay=1e-4),
    "cifar100": dict(steps=64_000, batch_size=128, lr=0.1, final_lr=0.001, weight_decay=1e-4),
    "imagefolder": dict(steps=30_000, batch_size=256, lr=0.1, final_lr=0.001, weight_decay=1e-4),
}
# ResNet-152 uses twice the weight decay at CIFAR/Tiny-ImageNet scale (App. E.2).
_ARCH_WEIGHT_DECAY = {"resnet152": 2e-4}
# PredSim trains badly with momentum SGD; the paper uses Adam 5e-4 -> 1e-6, wd 1e-4 (App. E.2, Tiny-ImageNet).
_PREDSIM = dict(optimizer="adam", lr=5e-4, final_lr=1e-6, weight_decay=1e-4)
_OPTIMIZERS = ("sgd", "adam")
_DTYPES = ("float32", "float64")


def method_of(decoupling: str) -> str:
    """The training method implied by a decoupling spec: backprop, dgl, predsim or sedona."""
    name = decoupling.split(":", 1)[0].lower()
    return name if name in ("backprop", "dgl", "predsim") else "sedona"


def resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """A copy of `cfg` with every `None` field filled from the data set, architecture and method."""
    base = _DATASET_DEFAULTS.get(cfg.data.dataset, _DATASET_DEFAULTS["imagefolder"])
    method = method_of(cfg.decoupling)
    opt = dict(optimizer="sgd", lr=base["lr"], final_lr=base["final_lr"],
               weight_decay=_ARCH_WEIGHT_DECAY.get(cfg.model.arch, base["weight_decay"]))
    if method == "predsim" and cfg.data.dataset not in ("digits", "synthetic"):
        opt.update(_PREDSIM)
    out = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model), data=dataclasses.replace(cfg.data))
    for name in ("optimizer", "lr", "final_lr", "weight_decay"):
        if getattr(out, name) is None:
            setattr(out, name, opt[name])
    if out.steps is None:
        out.steps = base["steps"]
    if out.batch_size is None:
        out.batch_size = base["batch_size"]
    out.data.batch_size = out.batch_size  # one source of truth: the data side reads it from DataConfig
    if out.label_smoothing is None:
        out.label_smoothing = 0.0 if method == "predsim" else 0.1
    if out.eval_interval is None:
        out.eval_interval = max(1, out.steps // 10)
    if out.checkpoint_interval is None:
        out.checkpoint_interval = max(1, out.steps // 4)
    validate(out)
    return out


def validate(cfg: TrainConfig) -> None:
    """Raise SedonaError naming the first out-of-range field of a resolved config."""
    checks = [
        (cfg.steps is not None and cfg.steps >= 1, f"steps must be >= 1, got {cfg.steps}"),
        (cfg.batch_size is not None and cfg.batch_size >= 1, f"batch size must be >= 1, got {cfg.batch_size}"),
        (cfg.optimizer in _OPTIMIZERS, f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {cfg.optimizer!r}"),
        (cfg.lr is not None and cfg.lr > 0, f"lr must be > 0, got {cfg.lr}"),
        (cfg.final_lr is not None and 0 <= cfg.final_lr, f"final lr must be >= 0, got {cfg.final_lr}"),
        (cfg.weight_decay is not None and cfg.weight_decay >= 0, f"weight decay must be >= 0, got {cfg.weight_decay}"),
        (0 <= (cfg.label_smoothing or 0.0) < 1, f"label smoothing must be in [0, 1), got {cfg.label_smoothing}"),
        (cfg.eval_interval is None or cfg.eval_interval >= 0, "eval interval must be >= 0"),
        (cfg.checkpoint_interval is None or cfg.checkpoint_interval >= 0, "checkpoint interval must be >= 0"),
        (cfg.log_interval >= 1, f"log interval must be >= 1, got {cfg.log_interval}"),
        (cfg.eval_batch_size >= 1, f"eval batch size must be >= 1, got {cfg.eval_batch_size}"),
        (cfg.dtype in _DTYPES, f"dtype must be one of {', '.join(_DTYPES)}, got {cfg.dtype!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise SedonaError(message)
