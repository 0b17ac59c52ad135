"""The head pool: registry, structure per Table 9, attachment after every layer, local losses."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sedona_runtime.heads import AUX_POOL, Head, HeadSpec, build_head, head_width_for, list_heads
from sedona_runtime.heads.aux import InvertedResidual
from sedona_runtime.heads.predsim import BETA, PRED_FEATURES, decoder_pool_kernel, decoder_pool_size, similarity_matrix
from sedona_runtime.models import ModelConfig, build_model, layer_output_shapes
from sedona_runtime.utils.errors import SedonaError

ALL_HEADS = ["aux1", "aux2", "aux3", "aux4", "mlp_sr", "predsim"]


def test_registry_and_pool():
    assert AUX_POOL == ("aux1", "aux2", "aux3", "aux4")
    assert list_heads() == ALL_HEADS  # the pool first, in order
    assert head_width_for("cifar") == 512
    assert head_width_for("tiny_imagenet") == head_width_for("imagenet") == 2048
    with pytest.raises(SedonaError, match="stem"):
        head_width_for("mnist")


def test_unknown_head_and_bad_spec_are_clear_errors():
    with pytest.raises(SedonaError, match="unknown head 'aux5'"):
        build_head("aux5", HeadSpec(8, 4, 10))
    with pytest.raises(SedonaError, match="in_size"):
        build_head("aux1", HeadSpec(8, 0, 10))
    with pytest.raises(SedonaError, match="nc"):
        build_head("aux1", HeadSpec(8, 4, 10, nc=0))


def _check_head(name: str, spec: HeadSpec, batch: int = 2) -> None:
    head = build_head(name, spec)
    assert isinstance(head, Head)
    x = torch.randn(batch, spec.in_channels, spec.in_size, spec.in_size, requires_grad=True)
    y = torch.arange(batch) % spec.num_classes
    loss, logits = head.local_loss(x, y, 0.1)
    assert logits.shape == (batch, spec.num_classes)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in head.parameters())


def _layer_specs(arch: str, stem: str, size: int) -> list[HeadSpec]:
    with torch.device("meta"):
        model = build_model(ModelConfig(arch=arch, stem=stem, width=0.25))
    specs = []
    for l, (c, h, _) in enumerate(layer_output_shapes(model, (3, size, size))):
        specs.append(HeadSpec(c, h, 10, width=16, nc=model.layer_head_channels(l)))
    return specs


# Every layer of both small shapes (sizes 32 down to 4 and 1), plus odd and tiny corner cases.
SPECS = (
    _layer_specs("small", "cifar", 32)
    + _layer_specs("small_resnet", "imagenet", 32)
    + [HeadSpec(1, 1, 3, width=4), HeadSpec(3, 1, 10, width=8), HeadSpec(5, 3, 7, width=8), HeadSpec(7, 2, 2, width=8)]
)


@pytest.mark.parametrize("name", ALL_HEADS)
def test_every_head_attaches_after_every_layer(name):
    assert any(s.in_size == 1 for s in SPECS) and any(s.in_channels % 2 for s in SPECS)
    torch.manual_seed(0)
    for spec in SPECS:
        _check_head(name, spec)


@pytest.mark.parametrize("arch,stem,size", [("vgg19", "cifar", 32), ("resnet50", "tiny_imagenet", 32)])
def test_every_pool_head_after_every_layer_of_the_real_shapes(arch, stem, size):
    torch.manual_seed(0)
    for spec in _layer_specs(arch, stem, size):
        for name in AUX_POOL:
            head = build_head(name, spec)
            assert head(torch.randn(2, spec.in_channels, spec.in_size, spec.in_size)).shape == (2, 10)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_aux_structure_follows_table_9(depth):
    spec = HeadSpec(in_channels=64, in_size=16, num_classes=10, width=32)
    head = build_head(f"aux{depth}", spec)
    blocks = [m for m in head.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == depth - 1
    nc = 16  # 64 // 4
    widths = [(b.body[0][0].in_channels, b.body[-2].out_channels, b.body[1][0].stride[0]) for b in blocks]
    assert widths == [(nc, nc, 1), (nc, 24, 2), (24, 24, 1)][: depth - 1]
    convs = [m for m in head.features.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].kernel_size) == (64, nc, (1, 1))
    assert (convs[1].groups, convs[1].stride, convs[1].kernel_size) == (nc, (2, 2), (3, 3))
    assert (convs[-1].out_channels, head.fc.in_features, head.fc.out_features) == (32, 32, 10)
    # Spatial size: 16 -> 8 (depthwise), -> 4 in the stride-2 inverted residual of aux3/aux4.
    out = head.features(torch.randn(2, 64, 16, 16))
    assert out.shape[-1] == (4 if depth >= 3 else 8)


def test_tiny_maps_keep_nc_as_the_release_does():
    # Issue 14, item 7: where the stride-2 block cannot downsample (the release tracks in_size // 2 after the
    # depthwise conv and needs >= 2), it runs at stride 1 and keeps Nc instead of widening to 1.5 Nc.
    def widths(size: int) -> list[int]:
        head = build_head("aux4", HeadSpec(in_channels=40, in_size=size, num_classes=5, width=8))
        return [b.body[-2].out_channels for b in head.modules() if isinstance(b, InvertedResidual)]

    assert widths(1) == widths(2) == widths(3) == [10, 10, 10]
    assert widths(4) == widths(5) == [10, 15, 15]
    head = build_head("aux4", HeadSpec(in_channels=40, in_size=1, num_classes=5, width=8))
    assert all(m.stride == (1, 1) for m in head.modules() if isinstance(m, nn.Conv2d))
    head2 = build_head("aux4", HeadSpec(in_channels=40, in_size=2, num_classes=5, width=8))
    assert [b.body[1][0].stride for b in head2.modules() if isinstance(b, InvertedResidual)] == [(1, 1)] * 3
    # The figures: aux4 after a 128-channel 2x2 layer (Nc 32, width 512, 10 classes).
    count = lambda size: sum(p.numel() for p in build_head("aux4", HeadSpec(128, size, 10, width=512, nc=32)).parameters())
    assert count(2) == 56_810 and count(4) == 78_186


def test_nc_default_and_override():
    assert HeadSpec(10, 4, 3).resolved_nc == 2
    assert HeadSpec(3, 4, 3).resolved_nc == 1
    assert build_head("aux1", HeadSpec(64, 8, 3, nc=5)).features[0][0].out_channels == 5


def test_default_local_loss_is_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    head = build_head("aux2", HeadSpec(16, 8, 6, width=16)).eval()
    x, y = torch.randn(4, 16, 8, 8), torch.tensor([0, 1, 5, 3])
    loss, logits = head.local_loss(x, y, 0.1)
    assert torch.equal(logits, head(x))
    assert torch.equal(loss, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_mlp_sr_matches_dgl_structure():
    head = build_head("mlp_sr", HeadSpec(in_channels=8, in_size=14, num_classes=10))
    assert head.pre_pool.output_size == 4  # ceil(14 / 4)
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in head.modules()) == 3
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(32, 32)] * 3 + [(32, 10)]


@pytest.mark.parametrize("size,side", [(1, 1), (2, 1), (4, 1), (5, 2), (8, 2), (32, 2)])
def test_mlp_sr_pools_to_the_release_mlp_in_size(size, side):
    # Issue 22: min(ceil(size / 4), 2) before the MLP, as the release's MLPSR (1x1 on maps of 4x4 and less).
    with torch.random.fork_rng():  # the global RNG stays as the later tests of this file expect it
        head = build_head("mlp_sr", HeadSpec(in_channels=8, in_size=size, num_classes=10))
    assert head.post_pool.output_size == side
    assert head.mlp[0].in_features == 8 * side * side
    x = torch.randn(2, 8, size, size, generator=torch.Generator().manual_seed(0))
    assert head(x).shape == (2, 10)


def test_predsim_pool_search_matches_reference_code():
    assert decoder_pool_size(1024, 14, 2048) == (1, 2)
    assert decoder_pool_size(1024, 14, 512) == (1, 1)
    assert decoder_pool_size(64, 8, 512) == (2, 4)
    assert decoder_pool_size(16, 4, 512) == (4, 4)  # fits already: no pooling
    assert decoder_pool_size(4096, 7, 2048) == (1, 1)  # cannot fit: pools to 1x1


@pytest.mark.parametrize("channels,size", [(1024, 14), (64, 7), (32, 6), (8, 5), (16, 3), (64, 8), (200, 1)])
def test_predsim_pools_like_the_reference_padded_average_pool(channels, size):
    # Issue 14, item 8: the reference pools with AvgPool2d(k, padding=(k * (ceil(size/k) - size//k)) // 2),
    # zero padding counted in the average; at 14x14 with a 16x16 kernel that is the top-left 8x8 cells / 256.
    head = build_head("predsim", HeadSpec(channels, size, 10))
    kh, kw = decoder_pool_kernel(channels, size, PRED_FEATURES)
    x = torch.rand(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    pooled = head.pool(x)
    if (kh, kw) == (1, 1):
        assert isinstance(head.pool, nn.Identity)
    else:
        ph = (kh * (math.ceil(size / kh) - size // kh)) // 2
        pw = (kw * (math.ceil(size / kw) - size // kw)) // 2
        padded = F.pad(x, (pw, pw, ph, ph))
        h, w = math.ceil(size / kh), math.ceil(size / kw)
        want = torch.stack([torch.stack([padded[:, :, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].sum((2, 3)) / (kh * kw)
                                         for j in range(w)], -1) for i in range(h)], -2)
        torch.testing.assert_close(pooled, want)
    assert pooled.flatten(1).shape[1] == head.decoder.in_features == channels * math.prod(decoder_pool_size(channels, size, PRED_FEATURES))
    if (channels, size) == (1024, 14):
        torch.testing.assert_close(pooled[..., 0, 0], x[:, :, :8, :8].sum((2, 3)) / 256)


def test_predsim_bound_is_a_head_setting():
    assert PRED_FEATURES == 512  # the SEDONA release's --dim-in-decoder default
    assert build_head("predsim", HeadSpec(1024, 14, 1000)).decoder.in_features == 1024
    assert build_head("predsim", HeadSpec(1024, 14, 1000, pred_features=2048)).decoder.in_features == 2048
    with pytest.raises(SedonaError, match="pred_features"):
        build_head("predsim", HeadSpec(1024, 14, 1000, pred_features=0))


def test_similarity_matrix():
    y = F.one_hot(torch.tensor([0, 1, 0, 2]), 3).float()
    r = similarity_matrix(y)
    assert torch.allclose(torch.diagonal(r), torch.ones(4))
    assert r[0, 2] == pytest.approx(1.0) and r[0, 1] == pytest.approx(-0.5)
    x = torch.randn(3, 5, 4, 4, generator=torch.Generator().manual_seed(0))  # seeded: some draws miss allclose's default tolerance
    expected = similarity_matrix(x.flatten(2).std(dim=2))  # >3 channels: per-channel spatial std
    assert torch.allclose(similarity_matrix(x), expected)


def test_predsim_loss_mixes_prediction_and_similarity():
    torch.manual_seed(0)
    head = build_head("predsim", HeadSpec(in_channels=8, in_size=6, num_classes=4, width=64))
    nn.init.normal_(head.decoder.weight)  # the decoder starts at zero, as in the reference
    x, y = torch.randn(5, 8, 6, 6), torch.tensor([0, 1, 2, 3, 1])
    loss, logits = head.local_loss(x, y, 0.3)  # label smoothing is ignored by PredSim
    pred = F.cross_entropy(logits, y)
    sim = F.mse_loss(similarity_matrix(head.conv_loss(x)), similarity_matrix(F.one_hot(y, 4).float()))
    assert BETA == 0.99
    assert torch.allclose(loss, (1 - BETA) * pred + BETA * sim, rtol=0, atol=1e-7)
    assert head.decoder.in_features <= PRED_FEATURES


def test_predsim_gradient_is_finite_on_constant_features():
    # Dead (all-zero) ReLU features make every std and row norm zero; the reference code yields NaN.
    for channels, size in ((8, 4), (1, 1)):
        head = build_head("predsim", HeadSpec(in_channels=channels, in_size=size, num_classes=3, width=16))
        x = torch.zeros(3, channels, size, size, requires_grad=True)
        loss, _ = head.local_loss(x, torch.tensor([0, 1, 2]), 0.0)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
