"""TrainConfig: everything a training run needs, with the paper's per-data-set defaults (Appendix E.2)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from sedona_runtime.data.config import MIN_BATCH_SIZE, DataConfig
from sedona_runtime.models import ModelConfig
from sedona_runtime.utils.errors import SedonaError


@dataclass
class TrainConfig:
    """A training run's options. Fields left `None` are filled by the resolver (training.resolver.resolve_run:
    `resolve_defaults` from the data set, method and architecture, then what the data decides)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    decoupling: str = "backprop"      # backprop | dgl:K | predsim:K | sedona:K | shipped name | file path
    retarget: bool = False            # allow a shipped decoupling of another arch (decoupling.retarget)
    steps: int | None = None          # iterations; one batch per step
    epochs: int | None = None         # instead of steps: steps = epochs * (training samples // batch size),
                                      # resolved once the data is loaded (training.resolver)
    batch_size: int | None = None     # training batch size: its one place (data.batch_size is None in a run)
    optimizer: str | None = None      # "sgd" | "adam"
    lr: float | None = None           # initial learning rate, cosine-decayed to final_lr over `steps`
    final_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    # 0.1 for backprop/DGL/SEDONA, 0 for PredSim (paper App. E.2). torch's form: eps/C on every class (Szegedy
    # et al., cited by the paper); the release puts eps/(C-1) on the wrong classes only, which at eps 0.1 and
    # C = 10 moves the gradient by 1.2% (relative; cosine 0.99999; tools/measure_release_conventions.py).
    label_smoothing: float | None = None
    eval_interval: int | None = None  # validate every N steps (0: only at the end)
    checkpoint_interval: int | None = None  # checkpoint every N steps (0: only at the end)
    log_interval: int = 10            # metrics line every N steps
    eval_batch_size: int = 256
    amp: bool = True                  # torch.autocast + a GradScaler per block; CUDA only, ignored on CPU
    channels_last: bool = False       # blocks compute in channels_last (NHWC) memory format; features between
                                      # blocks still travel contiguous (NCHW), made so before `ready`
    compile: bool = False             # torch.compile (inductor) each block's forward and head loss (training steps)
    cudnn_benchmark: bool = True      # CUDA: cuDNN autotunes each fixed training shape once
    dtype: str = "float32"            # "float64" for exactness checks
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    seed: int = 0                     # model/head init and batch order
    out_dir: str = "runs/default"
    tensorboard: bool = False         # also write every metrics record as TensorBoard scalars (<out_dir>/tensorboard)


# Per-data-set defaults (Appendix E.2). `digits` (8x8 images, ~1.6k training samples) and `synthetic` are
# demos/test data: short runs, and a lower rate because the batches are small. An ImageFolder tree is
# Tiny-ImageNet-like up to 64 px and ImageNet-like above (the same threshold as the model stem).
_DATASET_DEFAULTS: dict[str, dict] = {
    "digits": dict(steps=400, batch_size=64, lr=0.05, final_lr=0.0005, weight_decay=5e-4),
    "synthetic": dict(steps=50, batch_size=32, lr=0.05, final_lr=0.0005, weight_decay=5e-4),
    "cifar10": dict(steps=64_000, batch_size=128, lr=0.1, final_lr=0.001, weight_decay=1e-4),
    "cifar100": dict(steps=64_000, batch_size=128, lr=0.1, final_lr=0.001, weight_decay=1e-4),
    "tiny_imagenet": dict(steps=30_000, batch_size=256, lr=0.1, final_lr=0.001, weight_decay=1e-4),
    "imagenet": dict(steps=600_000, batch_size=256, lr=0.1, final_lr=1e-4, weight_decay=5e-5),
}
# ImageNet: ResNet-152 starts lower and ends lower than ResNet-101 (whose rates the other archs take).
_IMAGENET_ARCH = {"resnet152": dict(lr=0.05, final_lr=1e-5)}
# ResNet-152 uses twice the weight decay below ImageNet size (CIFAR/Tiny-ImageNet, App. E.2); ImageNet
# uses 5e-5 for both ResNets.
_ARCH_WEIGHT_DECAY = {"resnet152": 2e-4}
# PredSim trains badly with momentum SGD at Tiny-ImageNet; there the paper uses Adam 5e-4 -> 1e-6, wd 1e-4
# (App. E.2). At CIFAR (and ImageNet, where the paper has no PredSim run) it keeps the SGD row.
_PREDSIM_TINY = dict(optimizer="adam", lr=5e-4, final_lr=1e-6, weight_decay=1e-4)
_OPTIMIZERS = ("sgd", "adam")
_DTYPES = ("float32", "float64")
_METHODS = ("backprop", "dgl", "predsim")


def method_of_heads(heads: list[str]) -> str:
    """The method a decoupling's auxiliary heads amount to: no heads is backprop, all `predsim` heads is
    PredSim, all `mlp_sr` heads is DGL, anything else SEDONA."""
    from sedona_runtime.decoupling.baselines import BASELINE_HEADS

    if not heads:
        return "backprop"
    for method, head in BASELINE_HEADS.items():
        if all(h == head for h in heads):
            return method
    return "sedona"


def method_of(decoupling: str) -> str:
    """The training method of a decoupling spec: backprop, dgl, predsim or sedona.

    `dgl:K`/`predsim:K`/`sedona:K` name their method; a decoupling file or shipped name is judged by its
    heads, so a file of PredSim heads trains with PredSim's defaults (SedonaError when it cannot be read).
    """
    from sedona_runtime.decoupling import load_decoupling
    from sedona_runtime.decoupling.resolve import is_spec

    spec = (decoupling or "").strip()
    if is_spec(spec.lower()):
        name = spec.split(":", 1)[0].lower()
        return name if name in _METHODS else "sedona"
    return method_of_heads(load_decoupling(spec).heads)


def _scale(cfg: TrainConfig) -> str:
    """The row of `_DATASET_DEFAULTS` that fits the data set (an ImageFolder tree by its image size)."""
    if cfg.data.is_user:  # a data set function: CIFAR's recipe (its image size is not known before loading)
        return "cifar10"
    if cfg.data.dataset != "imagefolder":
        return cfg.data.dataset if cfg.data.dataset in _DATASET_DEFAULTS else "tiny_imagenet"
    from sedona_runtime.data.build import stem_for_size

    return "imagenet" if stem_for_size(cfg.data.size) == "imagenet" else "tiny_imagenet"


# The embedded digits are a demo data set of 8x8 images (README's main job: ResNet-152 cut in 4 on them, in a
# few minutes on 2 cores): there an unset width is 0.25 and an unset resolution the smallest input the
# network accepts (8 px as stored for the ResNets, 32 for VGG-19's five poolings). One rule for the
# trainer, the pipeline and the search (embedded_defaults).
EMBEDDED = "digits"
EMBEDDED_WIDTH = 0.25
EMBEDDED_SIZES = (8, 16, 32)


def embedded_defaults(model: ModelConfig, data: DataConfig) -> tuple[ModelConfig, DataConfig]:
    """(model, data) with the unset width and resolution filled: on the embedded digits, width 0.25 and the
    smallest of 8, 16, 32 px the network accepts; elsewhere width 1.0 and the data set's resolution."""
    from sedona_runtime.utils.imports import is_import_path

    model, data = dataclasses.replace(model), dataclasses.replace(data)
    embedded = data.dataset == EMBEDDED
    if model.width is None and not is_import_path(model.arch):
        model.width = EMBEDDED_WIDTH if embedded else 1.0
    if data.image_size is None and embedded:
        data.image_size = _smallest_input(model)
    return model, data


def _smallest_input(model: ModelConfig) -> int:
    """The smallest of EMBEDDED_SIZES the whole network runs on, classifier included (VGG-19's last pooling
    is in its classifier); built on the meta device: shapes only."""
    import torch

    from sedona_runtime.models import build_model
    from sedona_runtime.models.layered import check_output

    for size in EMBEDDED_SIZES:
        try:
            with torch.device("meta"):
                check_output(build_model(dataclasses.replace(model, num_classes=10)), (3, size, size), 10)
            return size
        except (SedonaError, RuntimeError, ValueError):
            continue
    return EMBEDDED_SIZES[-1]


def resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """A copy of `cfg` with every `None` field the options decide filled from the data set, architecture and
    method, its paths absolute and its user code imported (utils.imports.resolve_paths), validated.

    The first stage of the one resolver (training.resolver.resolve_run), which adds what the data decides
    (steps from epochs, classes, channels, stem) and the network (the decoupling); callers that need a run
    call that. Alone it serves early refusals before any data is read (the pipeline's shard rule). Idempotent.
    """
    import os

    from sedona_runtime.utils.imports import resolve_paths

    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model), data=dataclasses.replace(cfg.data))
    resolve_paths(cfg.model, cfg.data)
    cfg.out_dir = os.path.abspath(os.path.expanduser(cfg.out_dir))  # recorded: means the same from anywhere
    scale = _scale(cfg)
    base = _DATASET_DEFAULTS[scale]
    method = method_of(cfg.decoupling)
    opt = dict(optimizer="sgd", lr=base["lr"], final_lr=base["final_lr"], weight_decay=base["weight_decay"])
    if scale == "imagenet":
        opt.update(_IMAGENET_ARCH.get(cfg.model.arch, {}))
    else:
        opt["weight_decay"] = _ARCH_WEIGHT_DECAY.get(cfg.model.arch, base["weight_decay"])
    if method == "predsim" and scale == "tiny_imagenet":
        opt.update(_PREDSIM_TINY)
    model, data = embedded_defaults(cfg.model, cfg.data)
    out = dataclasses.replace(cfg, model=model, data=data)
    out.data.image_size = out.data.size  # the written config records the resolution actually used
    if out.final_lr is None and out.lr is not None and opt["final_lr"] > out.lr:
        # Only --lr given, below the recipe's final rate: keep the recipe's decay ratio instead.
        opt["final_lr"] = out.lr * opt["final_lr"] / opt["lr"]
    for name in ("optimizer", "lr", "final_lr", "weight_decay"):
        if getattr(out, name) is None:
            setattr(out, name, opt[name])
    if out.steps is None and out.epochs is None:
        out.steps = base["steps"]
    if out.batch_size is None:
        out.batch_size = base["batch_size"]
    out.data.batch_size = None  # the batch size lives in one place, TrainConfig.batch_size (DataConfig's is the search's)
    if out.label_smoothing is None:
        out.label_smoothing = 0.0 if method == "predsim" else 0.1
    step_defaults(out)
    validate(out)
    return out


def step_defaults(cfg: TrainConfig) -> None:
    """Intervals that follow the step count, once it is known."""
    if cfg.steps is None:
        return
    if cfg.eval_interval is None:
        cfg.eval_interval = max(1, cfg.steps // 10)
    if cfg.checkpoint_interval is None:
        cfg.checkpoint_interval = max(1, cfg.steps // 4)


def validate(cfg: TrainConfig) -> None:
    """Raise SedonaError naming the first out-of-range field of a resolved config (its data settings too)."""
    checks = [
        (cfg.steps is None and cfg.epochs is not None or cfg.steps is not None and cfg.steps >= 1,
         f"steps must be >= 1, got {cfg.steps}"),
        (cfg.epochs is None or isinstance(cfg.epochs, int) and cfg.epochs >= 1,
         f"epochs must be >= 1, got {cfg.epochs}"),
        (cfg.batch_size is not None and cfg.batch_size >= MIN_BATCH_SIZE,
         f"batch size must be >= {MIN_BATCH_SIZE} (BatchNorm cannot train on a single sample), got {cfg.batch_size}"),
        (cfg.optimizer in _OPTIMIZERS, f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {cfg.optimizer!r}"),
        (cfg.lr is not None and 0 < cfg.lr < math.inf, f"lr must be a finite number > 0, got {cfg.lr}"),
        (cfg.final_lr is not None and 0 <= cfg.final_lr < math.inf,
         f"final lr must be a finite number >= 0, got {cfg.final_lr}"),
        (cfg.lr is None or cfg.final_lr is None or cfg.final_lr <= cfg.lr,
         f"final lr {cfg.final_lr} is above lr {cfg.lr}: the schedule decays from --lr to --final-lr "
         "(pass a smaller --final-lr)"),
        (cfg.weight_decay is not None and 0 <= cfg.weight_decay < math.inf,
         f"weight decay must be a finite number >= 0, got {cfg.weight_decay}"),
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
    cfg.data.validate()  # here too, so the pipeline refuses bad data settings before it creates anything
    if cfg.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            raise SedonaError("--tensorboard needs the tensorboard package: pip install 'sedona-runtime[tensorboard]' "
                              "(or pip install tensorboard)")
