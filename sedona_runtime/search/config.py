"""SearchConfig: every setting of a SEDONA search (paper Sec. 3.3 and Appendix E.1 defaults)."""
from __future__ import annotations

from dataclasses import dataclass, field

from sedona_runtime.data.config import DataConfig
from sedona_runtime.heads.registry import AUX_POOL, list_heads
from sedona_runtime.models.registry import ModelConfig, validate_model_config
from sedona_runtime.utils.errors import SedonaError


def _search_data() -> DataConfig:
    return DataConfig(val_fraction=0.4)  # E.1: 40% of the training split validates (alpha, beta)


@dataclass
class SearchConfig:
    """A search; round-trips through JSON. `model.num_classes` and `model.stem` follow the data."""

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
    lr: float = 0.1  # inner SGD, cosine-annealed to lr_min over each phase
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    outer_lr: float = 0.01  # Adam on (alpha, beta)
    outer_weight_decay: float = 1e-6
    # Output.
    blocks: list[int] = field(default_factory=lambda: [2, 4, 8, 16])  # K values to discretize for
    random_alpha: bool = False  # also write Table 4's baselines: random alpha with the learned beta
    random_beta: bool = False  # ... and the learned alpha with random beta
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500  # steps between checkpoints (either phase); 0: only at phase ends and stops

    def validate(self) -> None:
        """SedonaError naming the first bad field."""
        validate_model_config(self.model)
        self.data.validate()
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
        for name in ("lr", "lr_min", "outer_lr"):
            value = getattr(self, name)
            if not _num(value) or value <= 0:
                raise SedonaError(f"{name}: must be a positive number, got {value!r}")
        for name in ("momentum", "weight_decay", "outer_weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if not _num(value) or value < 0 or (name in ("momentum", "label_smoothing") and value >= 1):
                raise SedonaError(f"{name}: must be a number in [0, {'1)' if name in ('momentum', 'label_smoothing') else 'inf)'}, got {value!r}")
        if not isinstance(self.blocks, list) or not self.blocks:
            raise SedonaError("blocks: must be a non-empty list of block counts K")
        for k in self.blocks:
            if not isinstance(k, int) or isinstance(k, bool) or k < 2:
                raise SedonaError(f"blocks: every K must be an integer >= 2, got {k!r}")
        if not isinstance(self.device, str) or not self.device:
            raise SedonaError("device: must be auto, cpu, cuda or cuda:N")


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(name: str, value: object, low: int | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise SedonaError(f"{name}: must be an integer{bound}, got {value!r}")


# Fields a resumed search may change without changing what it computes.
RESUME_FREE = ("device", "checkpoint_every")
