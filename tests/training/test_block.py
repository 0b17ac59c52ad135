"""Block and BlockRunner: K = 1 is plain backprop, no gradient crosses a block boundary, state round trip."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _training_helpers import LinearHead, tiny_cfg
from sedona_runtime.decoupling.schema import BlockSpec, Decoupling
from sedona_runtime.models import ModelConfig, build_model, layer_output_shapes
from sedona_runtime.training.block import (Block, BlockRunner, NonFiniteLossError, build_blocks,
                                           head_spec_fn)

CPU = torch.device("cpu")


def _data(n_batches: int, batch: int = 8, shape=(1, 16, 16), classes: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=g, dtype=torch.float64),
             torch.randint(0, classes, (batch,), generator=g)) for _ in range(n_batches)]


def _small_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="small", in_channels=1, width=0.25)).double()


def test_k1_equals_handwritten_backprop_loop():
    cfg = tiny_cfg(steps=4)
    model = _small_model()
    reference = copy.deepcopy(model)
    dec = Decoupling("small", model.num_layers, [BlockSpec(1, model.num_layers, None)])
    blocks = build_blocks(model, dec, head_spec_fn(model, (1, 8, 8), 10, 64))
    runner = BlockRunner(blocks[0], cfg, CPU)
    data = _data(cfg.steps, batch=4, shape=(1, 8, 8))

    # The plain loop: the same SGD, the cosine rate written out by hand with the same algebra as the runner
    # (lr * (r + (1 - r) * (1 + cos) / 2)), so the two runs do the identical float64 arithmetic.
    opt = torch.optim.SGD(reference.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    ratio = cfg.final_lr / cfg.lr
    for t, (x, y) in enumerate(data):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * t / cfg.steps)))
        loss = F.cross_entropy(reference(x), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert runner.train_step(x, y).loss == loss.item()

    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for name in want:  # exact: same ops in the same order on the same float64 values
        assert torch.equal(got[name], want[name]), name


def _two_blocks():
    torch.manual_seed(0)
    b0 = Block(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()), LinearHead(4, 3), 0, 2)
    b1 = Block(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), LinearHead(4, 3), 1, 2)
    return b0, b1


def test_no_gradient_crosses_a_block_boundary():
    b0, b1 = _two_blocks()
    cfg = tiny_cfg()
    r0, r1 = BlockRunner(b0, cfg, CPU), BlockRunner(b1, cfg, CPU)
    x, y = _data(1, shape=(1, 6, 6), classes=3)[0]
    out = r0.train_step(x, y).out
    assert not out.requires_grad and out.grad_fn is None  # handed on detached
    params = {n: p.detach().clone() for n, p in b0.named_parameters()}
    grads = {n: p.grad.clone() for n, p in b0.named_parameters()}
    r1.train_step(out, y)
    for n, p in b0.named_parameters():  # block 2's backward reached nothing of block 1
        assert torch.equal(p, params[n]), n
        assert torch.equal(p.grad, grads[n]), n
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in b1.parameters())

    # Even if a caller forgets to detach, the runner detaches its input: feed block 1's graph-attached
    # output straight into block 2 and check block 2's backward leaves block 1 without any gradient.
    b0.zero_grad(set_to_none=True)
    feats = b0(x.double())
    assert feats.requires_grad and feats.grad_fn is not None
    r1.train_step(feats, y)
    assert all(p.grad is None for p in b0.parameters())
    assert all(p.grad is not None for p in b1.parameters())


def test_build_blocks_uses_classifier_for_last_block_and_shares_weights():
    model = _small_model()
    dec = Decoupling("small", 6, [BlockSpec(1, 2, "aux1"), BlockSpec(3, 4, "mlp_sr"), BlockSpec(5, 6, None)])
    blocks = build_blocks(model, dec, head_spec_fn(model, (1, 16, 16), 10, 64))
    assert [b.is_last for b in blocks] == [False, False, True]
    assert blocks[-1].head is model.classifier
    assert blocks[1].layers[0] is model.layers[2]
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    model.eval()
    h = x
    for b in blocks:
        b.eval()
        h = b(h)
    assert tuple(h.shape[1:]) == layer_output_shapes(model, (1, 16, 16))[-1]
    assert torch.equal(blocks[-1].head(h), model(x))  # chained blocks + classifier == the whole network
    assert "aux1" in blocks[0].name and "layers 3-4" in blocks[1].name


def test_non_finite_loss_names_block_and_step_and_leaves_weights():
    b0, b1 = _two_blocks()
    cfg = tiny_cfg(lr=1e30, final_lr=1e30)
    r0, r1 = BlockRunner(b0, cfg, CPU), BlockRunner(b1, cfg, CPU)
    data = _data(5, shape=(1, 6, 6), classes=3)
    with pytest.raises(NonFiniteLossError) as info:
        for x, y in data:
            before = [copy.deepcopy(b.state_dict()) for b in (b0, b1)]
            x = r0.train_step(x, y).out
            r1.train_step(x, y)
    err = info.value
    assert f"block {err.block + 1}/2 at step {err.step}" in str(err)
    assert err.step >= 2  # step 1 starts from finite weights; the 1e30 update makes the next loss blow up
    failed = (b0, b1)[err.block]
    for name, t in failed.state_dict().items():  # the failing step did not touch the weights
        assert torch.equal(t, before[err.block][name]), name


def test_state_dict_round_trip_continues_identically():
    cfg = tiny_cfg()
    data = _data(6, shape=(1, 6, 6), classes=3)
    b_a, _ = _two_blocks()
    b_b, _ = _two_blocks()
    ra, rb = BlockRunner(b_a, cfg, CPU), BlockRunner(b_b, cfg, CPU)
    for x, y in data[:3]:
        ra.train_step(x, y)
    rb.load_state_dict(copy.deepcopy(ra.state_dict()))
    assert rb.step == 3 and rb.lr == ra.lr
    for x, y in data[3:]:
        assert ra.train_step(x, y).loss == rb.train_step(x, y).loss
    for (n, p), q in zip(b_a.state_dict().items(), b_b.state_dict().values()):
        assert torch.equal(p, q), n


def test_step_result_timings_cover_the_phases():
    b0, _ = _two_blocks()
    res = BlockRunner(b0, tiny_cfg(), CPU).train_step(*_data(1, shape=(1, 6, 6), classes=3)[0])
    assert set(res.timings) == {"forward", "head", "backward", "optimizer"}
    assert all(v >= 0 for v in res.timings.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_trains_with_a_scaler():
    b0, _ = _two_blocks()
    r = BlockRunner(b0, tiny_cfg(dtype="float32", amp=True), torch.device("cuda"))
    assert r.amp and r.scaler.is_enabled()
    x, y = _data(1, shape=(1, 6, 6), classes=3)[0]
    assert math.isfinite(r.train_step(x.float(), y).loss)
    assert r.state_dict()["scaler"]
