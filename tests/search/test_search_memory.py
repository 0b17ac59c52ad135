"""The weight memory keeps the N best, samples uniformly and evicts the oldest."""
from __future__ import annotations

import torch

from sedona_runtime.search.memory import WeightMemory, WeightSet


def _state(v: float, steps: int = 0) -> WeightSet:
    return WeightSet({"w": torch.tensor([v], dtype=torch.float64)}, {"w": torch.tensor([-v], dtype=torch.float64)},
                     steps)


def test_offer_keeps_the_n_best() -> None:
    mem = WeightMemory(3)
    scores = [0.1, 0.5, 0.3, 0.2, 0.9, 0.4, 0.05, 0.4]
    kept = [mem.offer(_state(s), s) for s in scores]
    # 0.2 evicts 0.1, 0.9 evicts 0.2, 0.4 evicts 0.3; 0.05 and a tie with the worst (0.4) are refused.
    assert kept == [True, True, True, True, True, True, False, False]
    assert sorted(mem.scores) == [0.4, 0.5, 0.9]
    assert sorted(mem.get(i).state["w"].item() for i in range(len(mem))) == [0.4, 0.5, 0.9]


def test_entries_are_copies_with_momentum_and_step_count() -> None:
    mem, s = WeightMemory(2), _state(1.0, steps=7)
    mem.offer(s, 1.0)
    s.state["w"].add_(5.0)
    s.momentum["w"].add_(5.0)
    entry = mem.get(0)
    assert entry.state["w"].item() == 1.0 and entry.momentum["w"].item() == -1.0 and entry.steps == 7


def test_push_evicts_the_oldest() -> None:
    mem = WeightMemory(3)
    for s in (0.9, 0.1, 0.5):  # pretrained entries, ages 0, 1, 2
        mem.offer(_state(s), s)
    mem.push(_state(-1.0))  # evicts age 0 (the best one: age, not score, decides)
    assert [mem.get(i).state["w"].item() for i in range(3)] == [0.1, 0.5, -1.0]
    mem.push(_state(-2.0))
    mem.push(_state(-3.0))
    assert [mem.get(i).state["w"].item() for i in range(3)] == [-1.0, -2.0, -3.0]
    assert mem.ages == [3, 4, 5]


def test_sample_is_uniform() -> None:
    n, draws = 10, 20000
    mem = WeightMemory(n)
    for i in range(n):
        mem.offer(_state(float(i)), float(i))
    gen = torch.Generator().manual_seed(1234)
    counts = torch.bincount(torch.tensor([mem.sample(gen) for _ in range(draws)]), minlength=n).double()
    expected = draws / n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    # Pearson chi-square with n - 1 = 9 degrees of freedom: a uniform sampler exceeds 27.88 with
    # probability 0.001. The seed is fixed, so the test is deterministic; a biased sampler (e.g.
    # never drawing the last entry, off by one) gives chi2 > 2000 and fails.
    assert chi2 < 27.88, (chi2, counts.tolist())
    assert counts.min() > 0


def test_state_dict_round_trip() -> None:
    mem = WeightMemory(2)
    mem.offer(_state(0.3), 0.3)
    mem.push(_state(0.7))
    other = WeightMemory(5)
    other.load_state_dict(mem.state_dict())
    assert other.capacity == 2 and other.ages == mem.ages and other.scores == mem.scores
    other.push(_state(1.0))
    assert [other.get(i).state["w"].item() for i in range(2)] == [0.7, 1.0]
    assert other.get(0).momentum["w"].item() == -0.7
    index = mem.index()  # what last.pt holds: no weights, entries by age
    assert index["entries"] == [{"age": 0, "score": 0.3}, {"age": 1, "score": None}] and "weights" not in str(index)
