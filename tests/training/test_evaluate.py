"""Top-k errors and the auxiliary ensemble (sum of the last two heads' log-softmax, paper Sec. 4.3)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _training_helpers import LinearHead
from sedona_runtime.training.block import Block
from sedona_runtime.training.evaluate import ErrorCounter, evaluate
from sedona_runtime.training.losses import ensemble_log_probs, topk_errors


def test_topk_errors_on_hand_made_scores():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.3, 0.5, 0.2]])
    y = torch.tensor([0, 1, 1])
    # top-1 predictions 0, 2, 1 -> one miss; top-5 clamps to the 3 classes -> no miss.
    assert topk_errors(scores, y) == {1: 1, 5: 0}
    assert topk_errors(scores, y, ks=(1, 2)) == {1: 1, 2: 0}


def test_ensemble_sums_log_softmax_and_can_beat_each_head():
    final = torch.tensor([[2.0, 1.9, -5.0], [0.0, 3.0, 0.0]])
    aux = torch.tensor([[0.0, 3.0, 0.0], [0.0, 2.0, 1.9]])
    got = ensemble_log_probs([final, aux])
    want = torch.log_softmax(final, 1) + torch.log_softmax(aux, 1)
    assert torch.equal(got, want)
    # Hand computed for sample 0: log-softmax sums favour class 1 (final alone says class 0).
    p_final = [math.exp(v) for v in (2.0, 1.9, -5.0)]
    p_aux = [math.exp(v) for v in (0.0, 3.0, 0.0)]
    manual = [math.log(a / sum(p_final)) + math.log(b / sum(p_aux)) for a, b in zip(p_final, p_aux)]
    assert got[0].tolist() == pytest.approx(manual, rel=1e-6)
    y = torch.tensor([1, 1])
    counter = ErrorCounter(ensemble=True)
    counter.add(final, y, aux)
    res = counter.result()
    assert (res.top1_error, res.ensemble_top1_error) == (0.5, 0.0)


def test_evaluate_chains_blocks_and_uses_the_last_two_heads():
    torch.manual_seed(0)
    b0 = Block(nn.Sequential(nn.Conv2d(1, 3, 1)), LinearHead(3, 4), 0, 2)
    b1 = Block(nn.Sequential(nn.Conv2d(3, 3, 1)), LinearHead(3, 4), 1, 2)
    x = torch.randn(10, 1, 4, 4)
    y = torch.randint(0, 4, (10,))
    res = evaluate([b0, b1], [(x[:6], y[:6]), (x[6:], y[6:])], torch.device("cpu"))
    with torch.no_grad():
        f0 = b0(x)
        final, aux = b1.head(b1(f0)), b0.head(f0)
    assert res.samples == 10
    assert res.top1_error == int((final.argmax(1) != y).sum()) / 10
    assert res.top5_error == 0.0  # 4 classes: top-5 clamps to top-4, which always contains the label
    ens = torch.log_softmax(final, 1) + torch.log_softmax(aux, 1)
    assert res.ensemble_top1_error == int((ens.argmax(1) != y).sum()) / 10
    assert b0.training and b1.training  # modes restored


def test_single_block_has_no_ensemble():
    torch.manual_seed(0)
    b = Block(nn.Sequential(nn.Identity()), LinearHead(1, 3), 0, 1)
    res = evaluate([b], [(torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]))], torch.device("cpu"))
    assert res.ensemble_top1_error is None and res.ensemble_top5_error is None
