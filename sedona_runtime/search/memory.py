"""Weight memory of the search (paper Sec. 3.3): the N best pretrained weight sets, sampled uniformly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

State = dict[str, torch.Tensor]


def cpu_copy(state: State) -> State:
    """A detached CPU copy of a state dict (memory entries never alias live weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@dataclass
class _Entry:
    age: int  # insertion counter: smaller is older
    score: float | None  # validation accuracy for pretrained entries, None for search updates
    state: State


class WeightMemory:
    """At most `capacity` weight sets.

    During pretraining `offer` keeps the `capacity` best by validation accuracy (ties keep the
    earlier one). During the search `push` stores an updated set and evicts the oldest entry.
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

    def _add(self, state: State, score: float | None) -> None:
        self._entries.append(_Entry(self._clock, score, cpu_copy(state)))
        self._clock += 1

    def offer(self, state: State, score: float) -> bool:
        """Keep `state` if the memory has room or `score` beats the worst kept score."""
        if len(self._entries) < self.capacity:
            self._add(state, score)
            return True
        def rank(i: int) -> tuple[float, int]:  # lowest score first; among equals the newest
            s = self._entries[i].score
            return (float("-inf") if s is None else s, -self._entries[i].age)

        worst = min(range(len(self._entries)), key=rank)
        if score <= rank(worst)[0]:
            return False
        del self._entries[worst]
        self._add(state, score)
        return True

    def push(self, state: State) -> None:
        """Store `state`, evicting the oldest entry when full."""
        if len(self._entries) >= self.capacity:
            oldest = min(range(len(self._entries)), key=lambda i: self._entries[i].age)
            del self._entries[oldest]
        self._add(state, None)

    def sample(self, generator: torch.Generator) -> int:
        """Index of one entry drawn uniformly."""
        if not self._entries:
            raise RuntimeError("cannot sample from an empty weight memory")
        return int(torch.randint(len(self._entries), (1,), generator=generator).item())

    def get(self, index: int) -> State:
        return self._entries[index].state

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "clock": self._clock,
            "entries": [{"age": e.age, "score": e.score, "state": e.state} for e in self._entries],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.capacity = int(sd["capacity"])
        self._clock = int(sd["clock"])
        self._entries = [_Entry(int(e["age"]), e["score"], e["state"]) for e in sd["entries"]]
