"""Which settings a resumed run may change, for every kind of run (train, pipeline, search), in one table.

One vocabulary: a setting is its dotted key in the run's config.json (`train.lr`, `pipeline.transport`,
`inner_steps`), named in messages with the option that sets it. Every key a run records is declared here,
free (it changes how the run is executed, never what it computes) or fixed (with what to do instead);
tests/training/test_resume_rules.py checks that every key of every kind is. The trainer
(training.greedy), the pipeline (pipeline.launcher; cli.greedy keeps its free settings on resume) and the
search (search.resume) call `check_resume`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sedona_runtime.utils.config import flatten
from sedona_runtime.utils.errors import SedonaError

KINDS = ("train", "pipeline", "search")
OVERWRITE = "or start over with --overwrite"


@dataclass(frozen=True)
class Rule:
    """One config.json key (dotted; `section.*` is every key below it) and whether a resume may change it."""

    key: str
    option: str | None = None  # the option that sets it, named in the message
    free: bool = False         # may change on resume
    why: str = ""              # free: why it may; fixed: what to do instead (default: resume with the same
                               # OPTION, or start over with --overwrite)
    # A free key's condition on the resumed run's (flattened) settings: a reason to refuse, or None.
    when: Callable[[dict], str | None] | None = None
    since: int = 1             # the spec version that records it: a run written before is not compared on it

    def instead(self) -> str:
        if self.why:
            return self.why
        what = f"the same {self.option}" if self.option else "the same settings"
        return f"resume with {what}, {OVERWRITE}"


def _fixed(key: str, option: str | None = None, why: str = "", since: int = 1) -> Rule:
    return Rule(key, option, False, why, since=since)


def _free(key: str, option: str | None = None, why: str = "", when=None) -> Rule:
    return Rule(key, option, True, why, when)


_SAME_DATA = f"the data differs from the run's: resume on the same data (--dataset, --data-dir), {OVERWRITE}"
_SPEED = "a speed setting: the same computation"

# Keys a train and a search run share below their model and data sections.
_MODEL = [_fixed("arch", "--arch/--model"), _fixed("width", "--width"),
          _fixed("num_classes", why=_SAME_DATA), _fixed("stem", why=_SAME_DATA), _fixed("in_channels", why=_SAME_DATA),
          _free("import_root", why="where the network's code is imported from (its import path is compared)")]
_DATA = [_fixed("dataset", "--dataset"), _fixed("data_dir", "--data-dir"), _fixed("image_size", "--image-size"),
         _fixed("val_fraction", "--val-fraction"), _fixed("batch_size", "--batch-size"),
         _fixed("augment", "--no-augment"), _free("workers", "--workers", "reading ahead: the same batches"),
         _fixed("seed", "--seed"), _fixed("synthetic_size"), _fixed("synthetic_classes"),
         _free("import_root", why="where the data set function is imported from (its import path is compared)")]


def _under(prefix: str, rules: list[Rule]) -> list[Rule]:
    return [Rule(prefix + r.key, r.option, r.free, r.why, r.when, r.since) for r in rules]


def _replicas_split(now: dict) -> str | None:
    """--replicas may change on resume while the batch splits into R equal shards (checkpoints are per block)."""
    from sedona_runtime.pipeline.replicas import check_shards

    try:
        check_shards(int(now.get("train.batch_size") or 0), int(now.get("pipeline.replicas") or 1))
    except SedonaError as exc:
        return str(exc)
    return None


_TRAIN: list[Rule] = [
    _free("spec_version", why="config.json's format (an older run's is upgraded when read)"),
    _free("data_note", why="the data's description (it says how long the image check took)"),
    _fixed("classes", why=_SAME_DATA),
    _fixed("decoupling.*", "--decoupling", f"the blocks are cut as config.json's decoupling says: resume with the "
                                           f"same --decoupling (and --retarget), {OVERWRITE}"),
    _fixed("input.*", why=f"the data's images, normalisation or augmentation differ from the run's: resume on the "
                          f"same data, {OVERWRITE}", since=2),
    *_under("train.model.", _MODEL), *_under("train.data.", _DATA),
    _fixed("train.decoupling", "--decoupling"), _fixed("train.retarget", "--retarget"),
    _fixed("train.steps", "--steps", f"the learning rate decays over the run's steps: resume with the same --steps "
                                     f"(or --epochs), {OVERWRITE}"),
    _free("train.epochs", "--epochs", "what it resolves to, train.steps, is compared"),
    _fixed("train.batch_size", "--batch-size"), _fixed("train.optimizer", "--optimizer"), _fixed("train.lr", "--lr"),
    _fixed("train.final_lr", "--final-lr"), _fixed("train.momentum"), _fixed("train.weight_decay", "--weight-decay"),
    _fixed("train.label_smoothing", "--label-smoothing"), _fixed("train.eval_interval", "--eval-interval"),
    _fixed("train.checkpoint_interval", "--checkpoint-interval"), _free("train.log_interval", why="reporting only"),
    _fixed("train.eval_batch_size", "--eval-batch-size"), _fixed("train.amp", "--no-amp"),
    _free("train.channels_last", "--channels-last", _SPEED), _free("train.compile", "--compile", _SPEED),
    _free("train.cudnn_benchmark", "--no-cudnn-benchmark", _SPEED), _fixed("train.dtype", "--dtype"),
    _free("train.device", "--device", "where it runs"), _fixed("train.seed", "--seed"),
    _free("train.out_dir", "--out", "the run directory may move"), _fixed("train.tensorboard", "--tensorboard"),
]

_SPREAD = "how the run is spread over processes and connected, never what it computes"
_PIPELINE: list[Rule] = _TRAIN + [
    _fixed("pipeline.blocks", "--blocks", f"a pipeline run keeps its K blocks (its decoupling's): resume with the "
                                          f"same --blocks, {OVERWRITE}"),
    _free("pipeline.replicas", "--replicas", "the checkpoints are one file per block", when=_replicas_split),
    *[_free(f"pipeline.{k}", f"--{k.replace('_', '-')}", _SPREAD)
      for k in ("replica_placement", "queue_depth", "window", "devices", "threads", "timeout", "transport",
                "device_maps", "iface", "port")],
    *[_free(f"pipeline.{k}", why=_SPREAD) for k in ("heartbeat", "heartbeat_timeout", "timeline", "resume")],
]

_SEARCH: list[Rule] = [
    *_under("model.", [r if r.key not in ("num_classes", "stem", "in_channels") else
                       _free(r.key, why="resolved from the data when the search began (the data's settings are "
                                        "compared)") for r in _MODEL]),
    *_under("data.", _DATA),
    *[_fixed(k, f"--{k.replace('_', '-')}") for k in (
        "head_pool", "head_width", "pretrain_steps", "eval_every", "eval_batches", "memory_size", "search_steps",
        "inner_steps", "val_batch_size", "blocks", "seed")],
    _fixed("pretrain", "--no-pretrain"), _fixed("weight_sampling", "--no-weight-sampling"),
    _fixed("random_alpha", "--random-alpha"), _fixed("random_beta", "--random-beta"),
    *[_fixed(k) for k in ("lr", "lr_min", "momentum", "weight_decay", "label_smoothing", "outer_lr",
                          "outer_weight_decay", "outer_beta1", "outer_beta2")],
    _fixed("shards", "--shards/--devices", f"batch norm is per shard: resume on as many shards (--shards, or "
                                           f"processes), {OVERWRITE}"),
    _free("device", "--device", "where it runs"), _free("checkpoint_every", "--checkpoint-every", "when it saves"),
    _free("fast_heads", "--no-fast-heads", "the same functions and hypergradient (search/second_order.py)"),
    _free("recompute", "--recompute", "the same hypergradient, recomputed (search/recompute.py)"),
]

RULES: dict[str, list[Rule]] = {"train": _TRAIN, "pipeline": _PIPELINE, "search": _SEARCH}


def rule_for(kind: str, key: str) -> Rule | None:
    """The rule of flattened config.json `key` for a `kind` run: its own, else its nearest `section.*`."""
    rules = RULES[kind]
    for r in rules:
        if r.key == key:
            return r
    best = None
    for r in rules:
        section = r.key[:-2]
        if (r.key.endswith(".*") and (key == section or key.startswith(section + "."))
                and (best is None or len(r.key) > len(best.key))):
            best = r
    return best


def free_keys(kind: str, section: str = "") -> list[str]:
    """The keys a `kind` run may change on resume (below `section`, without its prefix when one is given)."""
    prefix = f"{section}." if section else ""
    return [r.key[len(prefix):] for r in RULES[kind] if r.free and r.key.startswith(prefix) and not r.key.endswith("*")]


def check_resume(kind: str, saved: dict, now: dict, where: str) -> None:
    """SedonaError, one line, when resumed run `now` changes a fixed setting of `saved` (config.json contents,
    both in the current format: callers upgrade an older one first), or a free one against its condition.

    The line names the key with both values, the option that sets it and what to do instead; further
    differing keys are named after it. A key no rule declares is fixed. `where` names the run (its directory).
    """
    if kind not in RULES:
        raise ValueError(f"unknown kind of run {kind!r} (known: {', '.join(KINDS)})")
    a, b = flatten(saved), flatten(now)
    version = int(a.get("spec_version", 1) or 1)
    refused: list[tuple[str, str]] = []  # (key, what to say after "cannot resume WHERE: ")
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        rule = rule_for(kind, key)
        if rule is not None and rule.since > version:
            continue  # recorded only since a later format: the saved run says nothing about it
        if rule is not None and rule.free:
            reason = rule.when(b) if rule.when is not None else None
            if reason:
                refused.append((key, reason))
            continue
        how = rule.instead() if rule is not None else f"resume with the same settings, {OVERWRITE}"
        refused.append((key, f"the config differs from its config.json: {key} was {a.get(key)!r}, now "
                             f"{b.get(key)!r}: {how}"))
    if refused:
        more = [k for k, _ in refused[1:4]]
        tail = f" (also differing: {', '.join(more)}{', ...' if len(refused) > 4 else ''})" if more else ""
        raise SedonaError(f"cannot resume {where}: {refused[0][1]}{tail}")
