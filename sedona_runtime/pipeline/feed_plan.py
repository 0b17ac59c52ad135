"""The run's schedule mapped onto what the coordinator sends down the pipe: batches to read ahead, and markers."""
from __future__ import annotations

from sedona_runtime.data.feeder import Task, eval_tasks
from sedona_runtime.pipeline.messages import Marker
from sedona_runtime.training.schedule import CHECKPOINT, TEST, TRAIN, VALIDATE, Schedule


def feed_plan(schedule: Schedule, splits: dict, eval_batch_size: int) -> list[Task | Marker]:
    """Every item the coordinator sends, in the order of `schedule.events()`.

    TRAIN t -> Task("train", t); VALIDATE s -> Marker("validate", s) then the validation round's Tasks (nothing
    for an empty validation split: the trainer's validate() has nothing to count either); CHECKPOINT s ->
    Marker("checkpoint", s); TEST s -> the test round's Tasks. `splits`: {"val": dataset, "test": dataset}
    (either may be None). The Tasks are what data.feeder.read_ahead reads, in this order.
    """
    out: list[Task | Marker] = []
    for event in schedule.events():
        if event.kind == TRAIN:
            out.append(Task("train", event.step))
        elif event.kind == VALIDATE:
            tasks = eval_tasks("val", event.step, splits.get("val"), eval_batch_size)
            if tasks:
                out += [Marker("validate", event.step), *tasks]
        elif event.kind == CHECKPOINT:
            out.append(Marker("checkpoint", event.step))
        elif event.kind == TEST:
            out += eval_tasks("test", event.step, splits.get("test"), eval_batch_size)
        else:  # pragma: no cover - a new kind of event must be mapped here
            raise ValueError(f"no mapping for schedule event {event.kind!r}")
    return out


def validation_steps(plan: list) -> list[int]:
    """The steps of the validation rounds a plan sends (each one's 'validate' marker)."""
    return [item.step for item in plan if isinstance(item, Marker) and item.kind == "validate"]
