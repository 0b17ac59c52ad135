"""The single-process trainer and the pipeline's coordinator walk the same events: the trainer's train steps,
validations, checkpoints and test round, recorded as it runs, equal what the coordinator's feed sends (batches
and markers, recorded by a stub channel), fresh and resumed, stopped or not, with intervals that do and do not
divide the steps. In-process: no block process is started."""
from __future__ import annotations

import signal

import pytest
import torch

from sedona_runtime.pipeline.messages import Batch, EvalBatch, Marker
from sedona_runtime.training.greedy import GreedyTrainer
from sedona_runtime.utils.interrupt import StopRequest

pytestmark = pytest.mark.timeout(120)


def _cfg(out_dir, **kw):
    from sedona_runtime.data.config import DataConfig
    from sedona_runtime.models import ModelConfig
    from sedona_runtime.training.config import TrainConfig

    base = dict(model=ModelConfig(arch="small", width=0.25),
                data=DataConfig(dataset="synthetic", image_size=8, synthetic_size=80, synthetic_classes=4,
                                val_fraction=0.2, augment=True),
                decoupling="dgl:2", batch_size=8, log_interval=1, eval_batch_size=32, dtype="float64", device="cpu",
                out_dir=str(out_dir))
    base.update(kw)
    return TrainConfig(**base)


class _Recording(GreedyTrainer):
    """The trainer, noting each event as it does it: ("train", t), ("validate", s), ("checkpoint", s), ("test", s)."""

    def setup(self, **kw) -> None:
        super().setup(**kw)
        self.walk: list[tuple[str, int]] = []
        first, train_step = self.runners[0], self.runners[0].train_step

        def step(x, y):
            self.walk.append(("train", self.step))
            return train_step(x, y)

        first.train_step = step

    def validate(self):
        self.walk.append(("validate", self.step))
        return super().validate()

    def save_checkpoint(self) -> None:
        self.walk.append(("checkpoint", self.step))
        super().save_checkpoint()

    def summarize(self) -> dict:
        self.walk.append(("test", self.step))
        return super().summarize()


class _Out:
    """A channel end that records what the coordinator sends and can set a stop request during one put."""

    def __init__(self, sent: list, stop_during: int | None = None, stop: StopRequest | None = None) -> None:
        self.sent, self.stop_during, self.stop = sent, stop_during, stop

    def put(self, item, timeout, ready=None) -> None:
        self.sent.append(item)
        if isinstance(item, Batch) and item.step == self.stop_during:
            self.stop.signum = signal.SIGINT  # as the first Ctrl-C does, while this step is being fed

    def close(self, timeout) -> None:
        self.sent.append("END")


def _coordinator_walk(parts, start: int, stop_after: int | None) -> list[tuple[str, int]]:
    """What Coordinator.plan + feed send for `parts` from `start` steps (stopped after step `stop_after`)."""
    from types import SimpleNamespace

    from sedona_runtime.data.feeder import Task
    from sedona_runtime.pipeline.coordinator import Coordinator

    coord = Coordinator.__new__(Coordinator)  # the feed's state only: no group, no processes
    coord.cfg, coord.parts, coord.start_step, coord.K, coord.R, coord.timeout = parts.cfg, parts, start, 2, 1, 5.0
    coord.service, coord.child_failure = None, lambda: None
    coord.collector = SimpleNamespace(failed=lambda: False)
    sent: list = []
    stop = StopRequest()
    coord.out = _Out(sent, None if stop_after is None else stop_after - 1, stop)
    coord.outs = [coord.out]
    plan = coord.plan()
    fake = [SimpleNamespace(x=torch.zeros(1), y=torch.zeros(1), draws=None) for t in plan if isinstance(t, Task)]
    last = coord.feed(plan, fake, stop)
    assert last == (parts.cfg.steps if stop_after is None else stop_after) and sent[-1] == "END"
    walk = []
    for item in sent[:-1]:
        if isinstance(item, Batch):
            walk.append(("train", item.step))
        elif isinstance(item, Marker):
            walk.append((item.kind, item.step))
        elif item.split == "test" and item.index == 0:
            walk.append(("test", item.step))
        else:  # a validation round's batches follow its marker
            assert isinstance(item, EvalBatch) and item.split == "val" and walk[-1][0] in ("validate", "val")
            walk[-1] = ("val", item.step) if item.index + 1 < item.count else ("validate", item.step)
    return walk


@pytest.mark.parametrize("steps, evals, ckpts, start, stop_after", [
    (6, 2, 3, 0, None),    # intervals that divide the steps
    (7, 3, 2, 0, None),    # that do not
    (7, 3, 2, 3, None),    # resumed after a step that is no checkpoint point
    (7, 3, 2, 0, 4),       # stopped after a checkpoint point: saved once
    (7, 3, 0, 2, 5),       # resumed, then stopped after a step with no event: its checkpoint is added
    (3, 0, 0, 3, None),    # a finished run resumed: the final validation, checkpoint and test only
])
def test_trainer_and_coordinator_walk_the_same_events(tmp_path, steps, evals, ckpts, start, stop_after):
    cfg = _cfg(tmp_path / "run", steps=steps, eval_interval=evals, checkpoint_interval=ckpts)
    if start:  # a run stopped after `start` steps, to resume from (all steps: as if stopped before its summary)
        GreedyTrainer(cfg).run(stop_at=start)
        (tmp_path / "run" / "summary.json").unlink(missing_ok=True)
    trainer = _Recording(cfg)
    trainer.run(resume=bool(start), stop_at=stop_after)
    want = trainer.walk
    parts = trainer.parts
    assert parts.cfg == trainer.cfg
    assert _coordinator_walk(parts, start, stop_after) == want
    assert want[-1] == (("test", steps) if stop_after is None else ("checkpoint", stop_after))
