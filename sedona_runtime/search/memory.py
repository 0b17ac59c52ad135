"""Weight memory of the search (paper Sec. 3.3): the N best pretrained weight sets, sampled uniformly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

State = dict[str, torch.Tensor]


def cpu_copy(state: State) -> State:
    """A detached CPU copy of a state dict (memory entries never alias live weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@dataclass
class WeightSet:
    """One set of network and head weights, with what continuing from it needs.

    `momentum` is the inner SGD's momentum buffer per parameter name (paper E.1: momentum 0.9), empty
    before the first step; carrying it is what makes momentum act during the search (the release keeps
    each memory entry's optimizer state: sedona.py, save_to_memory). `steps` counts the weight steps these
    weights have taken; the inner learning rate is the pretraining cosine at that count (release:
    sedona.py, diff_step's `scheduler.step(self.time_step)`).
    """

    state: State
    momentum: State
    steps: int

    def cpu(self) -> "WeightSet":
        """A detached CPU copy."""
        return WeightSet(cpu_copy(self.state), cpu_copy(self.momentum), int(self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "momentum": self.momentum, "steps": self.steps}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "WeightSet":
        return WeightSet(d["state"], d["momentum"], int(d["steps"]))


@dataclass
class _Entry:
    age: int  # insertion counter: smaller is older (also the entry's file name in a checkpoint)
    score: float | None  # validation accuracy for pretrained entries, None for search updates
    weights: WeightSet


class WeightMemory:
    """At most `capacity` weight sets.

    During pretraining `offer` keeps the `capacity` best by validation accuracy (ties keep the
    earlier one). During the search `push` stores an updated set and evicts the oldest entry
    (Algorithm 1: "Evict the oldest weights in M"; the release instead pops the sampled parent,
    weight_memory.py `sample`; the paper is explicit, so the paper's rule is kept).
    `sample` draws an index uniformly from a torch.Generator the caller owns (and checkpoints).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"memory capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: list[_Entry] = []
        self._clock = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def scores(self) -> list[float | None]:
        return [e.score for e in self._entries]

    @property
    def ages(self) -> list[int]:
        return [e.age for e in self._entries]

    def _add(self, weights: WeightSet, score: float | None) -> None:
        self._entries.append(_Entry(self._clock, score, weights.cpu()))
        self._clock += 1

    def offer(self, weights: WeightSet, score: float) -> bool:
        """Keep `weights` if the memory has room or `score` beats the worst kept score."""
        if len(self._entries) < self.capacity:
            self._add(weights, score)
            return True

        def rank(i: int) -> tuple[float, int]:  # lowest score first; among equals the newest
            s = self._entries[i].score
            return (float("-inf") if s is None else s, -self._entries[i].age)

        worst = min(range(len(self._entries)), key=rank)
        if score <= rank(worst)[0]:
            return False
        del self._entries[worst]
        self._add(weights, score)
        return True

    def push(self, weights: WeightSet) -> None:
        """Store `weights`, evicting the oldest entry when full."""
        if len(self._entries) >= self.capacity:
            oldest = min(range(len(self._entries)), key=lambda i: self._entries[i].age)
            del self._entries[oldest]
        self._add(weights, None)

    def sample(self, generator: torch.Generator) -> int:
        """Index of one entry drawn uniformly."""
        if not self._entries:
            raise RuntimeError("cannot sample from an empty weight memory")
        return int(torch.randint(len(self._entries), (1,), generator=generator).item())

    def get(self, index: int) -> WeightSet:
        return self._entries[index].weights

    def items(self) -> Iterator[tuple[int, WeightSet]]:
        """(age, weights) of every entry, in memory order."""
        for e in self._entries:
            yield e.age, e.weights

    def index(self) -> dict[str, Any]:
        """Everything but the weights: capacity, clock and each entry's age and score, in memory order."""
        return {"capacity": self.capacity, "clock": self._clock,
                "entries": [{"age": e.age, "score": e.score} for e in self._entries]}

    def load_index(self, index: dict[str, Any], weights_of: Callable[[int], WeightSet]) -> None:
        """Restore from `index()` output, fetching each entry's weights by age."""
        self.capacity = int(index["capacity"])
        self._clock = int(index["clock"])
        self._entries = [_Entry(int(e["age"]), e["score"], weights_of(int(e["age"]))) for e in index["entries"]]

    def state_dict(self) -> dict[str, Any]:
        """The whole memory, weights included (in one object)."""
        sd = self.index()
        for entry, e in zip(sd["entries"], self._entries):
            entry["weights"] = e.weights.to_dict()
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        by_age = {int(e["age"]): WeightSet.from_dict(e["weights"]) for e in sd["entries"]}
        self.load_index(sd, by_age.__getitem__)
