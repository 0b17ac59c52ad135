"""The one schedule of a training run: the learning rate of every step and the ordered events (train, validate,
checkpoint, test) that the single-process trainer walks and the pipeline's coordinator maps onto batches and markers.

Steps are counted as the trainer counts them: the training step with 0-based index `t` turns the weights after `t`
steps into the weights after `t + 1` steps. A TRAIN event names `t` (the batch of global step t); every other event
names a number of completed steps `s` (the weights it validates, saves or tests). Between two training steps the
order is always: validate s, then checkpoint s (a checkpoint carries the best validation so far, its own included).
The run ends with the final validation, the checkpoint of the last step and the test round, in that order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

TRAIN, VALIDATE, CHECKPOINT, TEST = "train", "validate", "checkpoint", "test"


def cosine_factor(step: int, total: int, ratio: float) -> float:
    """LR multiplier of the step with 0-based index `step`: cosine from 1 down to `ratio` (= final_lr / lr) over
    `total` steps, `ratio` past the end."""
    t = min(step, total) / max(1, total)
    return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class Event:
    """One thing a run does, in order (see the module docstring for what `step` counts).

    kind: TRAIN (`lr`: that step's learning rate; `log`: metrics are logged after it), VALIDATE (`final`:
    the validation after the last step), CHECKPOINT, TEST (after the last step only).
    """

    kind: str
    step: int
    lr: float | None = None
    log: bool = False
    final: bool = False


class Schedule:
    """The events of `cfg` (a resolved TrainConfig) from `start` completed steps up to `until` (default: the end;
    clamped to start..cfg.steps).

    Pure arithmetic on the config: the trainer, every BlockRunner's LR scheduler and the pipeline's coordinator
    all take their points and rates from here, so they cannot drift apart.
    """

    def __init__(self, cfg, start: int = 0, until: int | None = None) -> None:
        self.total = int(cfg.steps)
        self.start = int(start)
        if not 0 <= self.start <= self.total:
            raise ValueError(f"start step {self.start} outside 0..{self.total}")
        self.until = self.total if until is None else max(self.start, min(int(until), self.total))
        self.base_lr = float(cfg.lr)
        self.ratio = float(cfg.final_lr) / self.base_lr
        self.eval_interval = int(cfg.eval_interval or 0)
        self.checkpoint_interval = int(cfg.checkpoint_interval or 0)
        self.log_interval = max(1, int(cfg.log_interval or 1))

    # -- the learning rate -------------------------------------------------------------------------
    def factor(self, step: int) -> float:
        """LR multiplier of the step with 0-based index `step` (what BlockRunner's LambdaLR applies)."""
        return cosine_factor(step, self.total, self.ratio)

    def lr(self, step: int) -> float:
        """The learning rate of the step with 0-based index `step`, exactly as the optimizer has it (LambdaLR sets
        base_lr * factor, the same float product)."""
        return self.base_lr * self.factor(step)

    # -- the points ----------------------------------------------------------------------------------
    def validates_after(self, s: int) -> bool:
        """Whether the trainer validates after `s` completed steps before the end (the final one is separate)."""
        return 0 < s < self.total and self.eval_interval > 0 and s % self.eval_interval == 0

    def checkpoints_after(self, s: int) -> bool:
        """Whether a checkpoint of `s` completed steps is taken before the end (the last one is separate)."""
        return 0 < s < self.total and self.checkpoint_interval > 0 and s % self.checkpoint_interval == 0

    def logs_after(self, s: int) -> bool:
        """Whether metrics are logged after `s` completed steps (every log interval, and the last step run)."""
        return s % self.log_interval == 0 or s == self.until

    # -- the events ----------------------------------------------------------------------------------
    def training(self) -> Iterator[Event]:
        """The training steps start .. until-1, each followed by its validation and checkpoint, if any."""
        for t in range(self.start, self.until):
            s = t + 1
            yield Event(TRAIN, t, lr=self.lr(t), log=self.logs_after(s))
            if self.validates_after(s):
                yield Event(VALIDATE, s)
            if self.checkpoints_after(s):
                yield Event(CHECKPOINT, s)

    def ending(self) -> list[Event]:
        """After the training steps: at the end of the run the final validation, the last checkpoint and the test
        round; a run stopped early at `until` saves its checkpoint (unless the schedule just took it)."""
        if self.until < self.total:
            return self.on_stop(self.until, self.until if self.checkpoints_after(self.until)
                                and self.until > self.start else None)
        return [Event(VALIDATE, self.total, final=True), Event(CHECKPOINT, self.total), Event(TEST, self.total)]

    def events(self) -> list[Event]:
        """Every event of the run, in order: `training()` then `ending()`."""
        return [*self.training(), *self.ending()]

    @staticmethod
    def on_stop(step: int, last_checkpoint: int | None) -> list[Event]:
        """What a run stopped on request after `step` completed steps still does: checkpoint that step, unless
        its checkpoint was the last thing taken (`last_checkpoint`)."""
        return [] if last_checkpoint == step else [Event(CHECKPOINT, step)]
