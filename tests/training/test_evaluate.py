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
    counter = ErrorCounter()
    counter.add([aux, final], y)
    res = counter.result()
    assert (res.top1_error, res.ensemble_top1_error) == (0.5, 0.0)
    assert res.block_top1_error == [0.0, 0.5]  # the aux head alone predicts class 1 for both samples



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
    # Each block's own head on its own features; the last entry is the classifier.
    assert res.block_top1_error == [int((aux.argmax(1) != y).sum()) / 10, res.top1_error]
    assert res.block_top5_error[-1] == res.top5_error
    assert b0.training and b1.training  # modes restored


def test_single_block_has_no_ensemble():
    torch.manual_seed(0)
    b = Block(nn.Sequential(nn.Identity()), LinearHead(1, 3), 0, 1)
    res = evaluate([b], [(torch.randn(4, 1, 2, 2), torch.tensor([0, 1, 2, 0]))], torch.device("cpu"))
    assert res.ensemble_top1_error is None and res.ensemble_top5_error is None
    assert res.block_top1_error == [res.top1_error] and res.block_top5_error == [res.top5_error]


def test_error_counter_counts_every_block_over_batches():
    """Hand-made logits of 3 blocks over two batches: per-block top-1/top-5, classifier and ensemble."""
    eye = torch.eye(6)
    y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([3, 4])
    counter = ErrorCounter()
    # block 1 right on everything, block 2 wrong on the first sample of each batch, block 3 always wrong;
    # a wrong prediction ranks the label second, so every top-5 holds it (no ties decide anything).
    wrong = lambda y: 2 * eye[(y + 1) % 6] + eye[y]  # noqa: E731
    right = lambda y: 3 * eye[y]  # noqa: E731
    for y in (y1, y2):
        counter.add([right(y), torch.cat([wrong(y[:1]), right(y[1:])]), wrong(y)], y)
    res = counter.result()
    assert res.samples == 5
    assert res.block_top1_error == [0.0, 0.4, 1.0] and res.top1_error == 1.0
    assert res.block_top5_error == [0.0, 0.0, 0.0] and res.top5_error == 0.0
    # The ensemble sums the log-softmax of blocks 2 and 3: block 2's confident right answers outvote
    # block 3's wrong ones, so it misses exactly where block 2 misses.
    assert res.ensemble_top1_error == 0.4
    with pytest.raises(ValueError, match="blocks"):
        counter.add([eye[y1], eye[y1]], y1)  # the block count may not change
    with pytest.raises(ValueError, match="labels"):
        ErrorCounter().add([eye[y1]], y2)
