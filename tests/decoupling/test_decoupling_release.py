"""Shipped decouplings against the release's own discretization of the released values (golden facts)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sedona_runtime.decoupling import load_decoupling

DATA = Path(__file__).resolve().parent / "data"
# Computed once from the release (see its "source"): its cuts and heads for the four networks at K = 2..16.
GOLDEN = json.loads((DATA / "release-discretization.json").read_text())["architectures"]
REFERENCE = json.loads((DATA / "sedona-released-alpha-beta.json").read_text())["architectures"]
CASES = [(arch, k) for arch in ("vgg19", "resnet50", "resnet101", "resnet152") for k in (2, 4, 8, 16)]


def _float32_scores(arch: str) -> list[float]:
    """softmax(alpha)[0] in float32, as the release computes it before its topk."""
    return torch.softmax(torch.tensor(REFERENCE[arch]["alpha"], dtype=torch.float32), 1)[:, 0].tolist()


@pytest.mark.parametrize("arch,k", CASES)
def test_golden_is_a_float32_top_k(arch, k):
    # The golden cuts are a top K-1 of the float32 scores (topk may pick any of exactly tied ones).
    scores = _float32_scores(arch)
    cuts = GOLDEN[arch][str(k)]["cuts"]
    assert len(cuts) == k - 1 and sorted(cuts) == cuts
    others = [scores[i] for i in range(len(scores)) if i + 1 not in cuts]
    assert min(scores[c - 1] for c in cuts) >= max(others, default=0.0)


@pytest.mark.parametrize("arch,k", CASES)
def test_shipped_matches_the_release_but_where_it_picks_among_float32_ties(arch, k):
    """Equal cuts and heads for 15 of the 16 files. resnet152_k16 is the exception: at float32 the
    release's 11th-15th picks and Table 10's all score exactly 0.5, and the shipped file follows the
    table (31, 37, 38, 48, 49) where the release's topk took 31, 32, 33, 35, 37. On the cuts both have
    the heads agree, but at 37: Table 10 names aux4 where argmax beta is aux2 (its beta logits all lie
    within 1.3e-9 of 0, as at 38, 48 and 49, where the table also names aux4)."""
    golden = GOLDEN[arch][str(k)]
    dec = load_decoupling(f"{arch}_k{k}")
    heads = [int(h.removeprefix("aux")) for h in dec.heads]
    if (arch, k) != ("resnet152", 16):
        assert dec.boundaries == golden["cuts"] and heads == golden["heads"]
        return
    scores = _float32_scores(arch)
    differ = set(dec.boundaries) ^ set(golden["cuts"])
    assert differ == {32, 33, 35, 38, 48, 49}
    assert all(scores[c - 1] == 0.5 for c in differ)
    ours, theirs = dict(zip(dec.boundaries, heads)), dict(zip(golden["cuts"], golden["heads"]))
    assert {c for c in set(ours) & set(theirs) if ours[c] != theirs[c]} == {37}
    assert ours[37] == 4 and theirs[37] == 2 and max(map(abs, REFERENCE[arch]["beta"][36])) < 1.3e-9
