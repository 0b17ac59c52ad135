"""SearchConfig: every setting of a SEDONA search (paper Sec. 3.3 and Appendix E.1 defaults)."""
from __future__ import annotations

from dataclasses import dataclass, field

from sedona_runtime.data.config import DataConfig
from sedona_runtime.heads.registry import AUX_POOL, list_heads
from sedona_runtime.models.registry import ModelConfig, build_model, validate_model_config
from sedona_runtime.utils.errors import SedonaError


def _search_data() -> DataConfig:
    return DataConfig(val_fraction=0.4)  # E.1: 40% of the training split validates (alpha, beta)


PAPER_BLOCKS = [2, 4, 8, 16]  # the K values of the paper's Figure 3 and Tables 10-13


@dataclass
class SearchConfig:
    """A search; round-trips through JSON. `model.num_classes` and `model.stem` follow the data.

    Rule for every default: the paper where it is explicit, the authors' release (github.com/mjpyeon/sedona)
    where the paper is silent or ambiguous. Sources:

    - data.val_fraction 0.4: E.1 ("40% of CIFAR-10 training split as a validation set").
    - head_pool aux1..aux4: Sec. 4.1, App. D.2, Table 9. head_width: 512 at CIFAR scale, 2048 above (Table 9:
      "PwiseConv 2048" on ImageNet; D.2 "0.25x width" on CIFAR-10).
    - pretrain, pretrain_steps 40,000, memory_size 50: Sec. 3.3 and E.1. eval_every 80: E.1.
    - weight_sampling: Sec. 3.3 (Table 8 ablates it). search_steps 2,000: E.1. inner_steps T = 5: Sec. 3.3.
    - lr 0.1 -> lr_min 0.001 (cosine), momentum 0.9, weight_decay 1e-3, label_smoothing 0.1: E.1, which also
      says pretraining uses "the same setting as in the inner optimization".
    - Inner learning rate: the pretraining cosine over `pretrain_steps` evaluated at the sampled weights'
      own step count (WeightSet.steps), for the T unrolled steps and the extra weight step alike; the paper
      is silent, the release does this (sedona.py: diff_step's `scheduler.step(self.time_step)`): about
      0.0034 down to 0.001 for weights from the last 4,000 of 40,000 pretraining steps. The schedule keeps
      its length without pretraining too (the release's `max_step`); past its end the rate is lr_min.
    - Momentum: each memory entry keeps its SGD momentum buffers, carried through the T unrolled steps and
      the extra weight step (E.1's momentum; the release stores each entry's optimizer state).
    - outer_lr 0.01, outer_weight_decay 1e-6: E.1 (Adam). outer_beta1 0.5, outer_beta2 0.999: the release
      (search.py: `optim.Adam(..., betas=(0.5, 0.999))`); the paper does not give them.
    - val_batch_size 1,024: the release (README's search command and config.py `--valid-batch-size`): one
      shuffled batch of min(1024, |val|) validation images per outer step for L_val of Eq. 7.
    - blocks None: every K of PAPER_BLOCKS the network can be cut into; an explicit list must fit entirely.
    - fast_heads: the heads' layers in the formulation of search/second_order.py for every training step
      (pretraining, the unrolled steps, the weight step); the same functions and hypergradient up to
      floating-point rounding (tests/search pin it in float64), several times faster on CPU
      (benchmarks/README.md). False: PyTorch's own layers.
    - recompute None: the stored unrolled graph where its predicted peak fits the device, else per-step
      recomputation (search/recompute.py, the same hypergradient; the start line says which and why); True or
      False: as asked. A run whose predicted peak does not fit either way is refused at start
      (search/memory_model.py). The release spreads the unrolled steps over GPUs instead (sedona.py).

    Divergences from the release kept on purpose (the paper is explicit, or the release's choice is not
    what its paper computes):

    - Weight memory eviction: Algorithm 1 evicts the oldest entry; the release pops the sampled parent
      (weight_memory.py `sample`), so the child replaces it. The paper's rule is used.
    - The hypergradient is d L_val / d(alpha, beta) (Eq. 7). The release's diff_step differentiates the
      variable `loss`, which holds the last inner step's relaxed training loss; its validation loss is only
      logged. The paper's Eq. 7 is used. Measured (tools/measure_release_conventions.py: small net, random
      weights, alpha/beta ~ 0.1 N(0, 1), T = 5, float64): the cosine between the two hypergradients is
      0.05, -0.21 and 0.15 on three seeds, nearly orthogonal.
    - Relaxation: Eq. 3-6 as written. The release also multiplies each head's output by s = 1/(softmax(alpha)_0
      + 1e-5) (feeding it the activation divided by s: `dec_out_scale`, a temperature Eqs. 3-6 do not have)
      and weights the heads' gradients by softmax(alpha)_0, where Eq. 6 leaves them unscaled. Measured (same
      tool, VGG-19 0.25x, random weights, batch 32): the cosine of each layer's local gradient d L^l / d
      theta_l with s against without is 0.998-1.000 at alpha = 0 (s = 2, the search's start) and 0.32-1.00 at
      the released alpha (s up to 9.8e4, where softmax(alpha)_0 is ~0; 1.00 where it is ~1).
    - Label smoothing (`label_smoothing`, also the training config's): torch's form, eps/C on every class
      (Szegedy et al., whom the paper cites). The release's SmoothCrossEntropyLoss puts 1 - eps on the label
      and eps/(C-1) on the others. Measured (same tool, eps 0.1, random logits): C = 10: targets 0.91/0.01 vs
      0.90/0.0111, loss 8.3e-5 apart (relative), gradient cosine 0.99999, relative gradient difference 1.2%;
      C = 100: 1.4e-5, 1.00000, 0.11%.
    - L_val uses batch statistics (train-mode batch norm, as DARTS) and plain cross-entropy, so that it is a
      differentiable function of the unrolled weights; the release's logged validation loss uses eval mode
      and label smoothing, but never enters its gradient.
    - weight_decay 1e-3 (E.1) where the release's default is 1e-4 (config.py; its search command keeps it).
    - Pretraining evaluates on the whole validation split (E.1: "on the validation set"; `eval_batches`
      caps it) where the release uses one batch of 1,024.
    - The unrolled steps leave no trace in the batch-norm running buffers: the weight step starts from the
      sampled entry's buffers (the release keeps the T unrolled steps' updates in the stored entry).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=_search_data)
    head_pool: list[str] = field(default_factory=lambda: list(AUX_POOL))
    head_width: int | None = None  # None: 512 at CIFAR scale, 2048 above (head_width_for)
    # Pretraining with alpha = beta = 0 and the weight memory (Sec. 3.3).
    pretrain: bool = True  # False: the "- pretraining" ablation of Table 8
    pretrain_steps: int = 40_000
    eval_every: int = 80  # validate (and offer the weights to the memory) every N pretraining steps
    eval_batches: int | None = None  # cap on validation batches per evaluation (None: the whole split)
    memory_size: int = 50
    weight_sampling: bool = True  # False: the "- weight sampling" ablation (always continue the newest)
    # Bilevel optimisation (Algorithm 1).
    search_steps: int = 2_000
    inner_steps: int = 5  # T; 1 is the "- extra inner steps" ablation
    lr: float = 0.1  # inner SGD: cosine from lr to lr_min over pretrain_steps (see the docstring)
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    outer_lr: float = 0.01  # Adam on (alpha, beta)
    outer_weight_decay: float = 1e-6
    outer_beta1: float = 0.5
    outer_beta2: float = 0.999
    val_batch_size: int = 1024  # validation images per outer step (min with the split's size)
    fast_heads: bool = True
    # Data parallelism (search/sharding.py): every batch cut into `shards` shards, batch norm per shard,
    # gradients averaged; computed in one process (--shards) or one shard per process (--devices, torchrun).
    shards: int = 1
    recompute: bool | None = None  # hypergradient by per-step recomputation; None: when the stored one won't fit
    # Output.
    blocks: list[int] | None = None  # K values to discretize for; None: PAPER_BLOCKS that fit
    random_alpha: bool = False  # also write Table 4's baselines: random alpha with the learned beta
    random_beta: bool = False  # ... and the learned alpha with random beta
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500  # steps between checkpoints (either phase); 0: only at phase ends and stops

    def blocks_for(self, num_layers: int) -> list[int]:
        """The K values to write for a network of `num_layers` layers (SedonaError for an explicit K > L)."""
        if self.blocks is None:
            return [k for k in PAPER_BLOCKS if k <= num_layers]
        too_many = sorted({k for k in self.blocks if k > num_layers})
        if too_many:
            raise SedonaError(f"blocks: {self.model.arch} has {num_layers} layers, so it cannot be cut into "
                              f"K = {', '.join(map(str, too_many))} blocks (K <= {num_layers})")
        return sorted(set(self.blocks))

    def validate(self) -> None:
        """SedonaError naming the first bad field."""
        validate_model_config(self.model)
        self.data.validate()
        if self.data.batch_size is None:  # DataConfig leaves it None in a training run's spec; a search needs it
            raise SedonaError("data.batch_size: a search needs a batch size (--batch-size)")
        if not self.data.val_fraction > 0:
            raise SedonaError("data.val_fraction: the search needs a validation split (> 0)")
        if not isinstance(self.head_pool, list) or not self.head_pool:
            raise SedonaError("head_pool: must be a non-empty list of head names")
        known = list_heads()
        for h in self.head_pool:
            if h not in known:
                raise SedonaError(f"head_pool: unknown head {h!r} (known: {', '.join(known)})")
        if len(set(self.head_pool)) != len(self.head_pool):
            raise SedonaError(f"head_pool: duplicate heads in {self.head_pool}")
        _int("head_width", self.head_width, 1, optional=True)
        _int("pretrain_steps", self.pretrain_steps, 0)
        _int("eval_every", self.eval_every, 1)
        _int("eval_batches", self.eval_batches, 1, optional=True)
        _int("memory_size", self.memory_size, 1)
        _int("search_steps", self.search_steps, 1)
        _int("inner_steps", self.inner_steps, 1)
        _int("seed", self.seed, None)
        _int("checkpoint_every", self.checkpoint_every, 0)
        _int("val_batch_size", self.val_batch_size, 1)
        _int("shards", self.shards, 1)
        for name, size in (("data.batch_size", self.data.batch_size), ("val_batch_size", self.val_batch_size)):
            if self.shards > 1 and size // self.shards < 2:  # batch norm normalises each shard by its own rows
                raise SedonaError(f"{name}: {size} rows cannot be cut into {self.shards} shards of at least 2 "
                                  "(batch norm per shard); use a larger batch or fewer shards/devices")
        for name in ("lr", "lr_min", "outer_lr"):
            value = getattr(self, name)
            if not _num(value) or value <= 0:
                raise SedonaError(f"{name}: must be a positive number, got {value!r}")
        below_one = ("momentum", "label_smoothing", "outer_beta1", "outer_beta2")
        for name in ("momentum", "weight_decay", "outer_weight_decay", "label_smoothing", "outer_beta1", "outer_beta2"):
            value = getattr(self, name)
            if not _num(value) or value < 0 or (name in below_one and value >= 1):
                raise SedonaError(f"{name}: must be a number in [0, {'1)' if name in below_one else 'inf)'}, got {value!r}")
        for name in ("pretrain", "weight_sampling", "random_alpha", "random_beta", "fast_heads"):
            if not isinstance(getattr(self, name), bool):
                raise SedonaError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if self.recompute is not None and not isinstance(self.recompute, bool):
            raise SedonaError(f"recompute: must be true, false or null (decide from the memory), got {self.recompute!r}")
        if self.blocks is not None and (not isinstance(self.blocks, list) or not self.blocks):
            raise SedonaError("blocks: must be a non-empty list of block counts K (or null for 2, 4, 8, 16)")
        for k in self.blocks or []:
            if not isinstance(k, int) or isinstance(k, bool) or k < 2:
                raise SedonaError(f"blocks: every K must be an integer >= 2, got {k!r}")
        if not isinstance(self.device, str) or not self.device:
            raise SedonaError("device: must be auto, cpu, cuda or cuda:N")


def count_layers(model: ModelConfig) -> int:
    """Layers of `model` (built on the meta device: shapes only, nothing allocated)."""
    import torch

    with torch.device("meta"):
        return build_model(model).num_layers


def check_blocks(cfg: SearchConfig) -> tuple[int, list[int]]:
    """(layers, K values to write) for `cfg`; SedonaError, before anything runs, when a K cannot be cut."""
    num_layers = count_layers(cfg.model)
    if num_layers < 2:
        raise SedonaError(f"model.arch: {cfg.model.arch} has one layer: nothing to decouple")
    ks = cfg.blocks_for(num_layers)
    if not ks:
        raise SedonaError(f"blocks: {cfg.model.arch} has {num_layers} layers, fewer than every default K "
                          f"({', '.join(map(str, PAPER_BLOCKS))}); pass --blocks")
    return num_layers, ks


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(name: str, value: object, low: int | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise SedonaError(f"{name}: must be an integer{bound}, got {value!r}")


# Named starting points (`--preset`): field overrides on top of the defaults ("model"/"data" are sections).
PRESETS: dict[str, dict] = {
    # A first look in minutes on a laptop CPU: the small net on 16x16 digits, narrow heads, a short
    # schedule (a real search of the paper's networks takes days: benchmarks/README.md).
    "quick": {
        "model": {"arch": "small", "width": 0.5},
        "data": {"dataset": "digits", "image_size": 16, "batch_size": 64},
        "head_width": 64, "pretrain_steps": 200, "eval_every": 25, "memory_size": 8,
        "search_steps": 20, "inner_steps": 5, "val_batch_size": 128, "checkpoint_every": 50,
    },
}


def apply_preset(cfg: SearchConfig, name: str) -> None:
    """Set preset `name`'s fields on `cfg` (SedonaError for an unknown name)."""
    if name not in PRESETS:
        raise SedonaError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})")
    for key, value in PRESETS[name].items():
        if isinstance(value, dict):
            for sub, v in value.items():
                setattr(getattr(cfg, key), sub, v)
        else:
            setattr(cfg, key, value)
