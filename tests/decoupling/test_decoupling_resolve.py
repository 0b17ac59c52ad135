"""Baselines, spec resolution (backprop, dgl:K, predsim:K, sedona:K, shipped names, paths) and retargeting."""
from __future__ import annotations

import pytest

from sedona_runtime.decoupling import (
    backprop_decoupling,
    load_decoupling,
    resolve_decoupling,
    retarget,
    save_decoupling,
    uniform_decoupling,
)
from sedona_runtime.decoupling.baselines import uniform_boundaries
from sedona_runtime.decoupling.retarget import retarget_boundaries
from sedona_runtime.utils.errors import SedonaError


def _sizes(dec):
    return [b.last - b.first + 1 for b in dec.blocks]


@pytest.mark.parametrize("L, K, sizes", [(16, 4, [4, 4, 4, 4]), (50, 4, [13, 13, 12, 12]), (6, 4, [2, 2, 1, 1]),
                                         (33, 16, [3] + [2] * 15), (5, 5, [1] * 5), (7, 1, [7])])
def test_uniform_split_gives_extra_layers_to_the_first_blocks(L, K, sizes):
    dec = uniform_decoupling("net", L, K, "mlp_sr")
    assert _sizes(dec) == sizes
    assert dec.heads == ["mlp_sr"] * (K - 1) and dec.blocks[-1].head is None


def test_uniform_boundaries_and_bad_K():
    assert uniform_boundaries(50, 4) == [13, 26, 38]
    for k in (0, 51, 2.5):
        with pytest.raises(SedonaError, match=r"K must be an integer in 1..50"):
            uniform_boundaries(50, k)


def test_baseline_specs():
    dgl = resolve_decoupling("dgl:4", "resnet152", 50)
    assert _sizes(dgl) == [13, 13, 12, 12] and dgl.heads == ["mlp_sr"] * 3 and dgl.source.startswith("dgl:4")
    ps = resolve_decoupling("predsim:2", "vgg19", 16)
    assert ps.boundaries == [8] and ps.heads == ["predsim"]
    bp = resolve_decoupling("backprop", "small", 6)
    assert bp == backprop_decoupling("small", 6) and bp.K == 1 and bp.blocks[0].head is None
    assert resolve_decoupling("dgl:1", "small", 6).blocks == bp.blocks  # K = 1 is backprop


def test_sedona_spec_rederives_from_shipped_values():
    for k in (2, 4, 8, 16):
        assert resolve_decoupling(f"sedona:{k}", "resnet152", 50).blocks == load_decoupling(f"resnet152_k{k}").blocks
    k3 = resolve_decoupling("sedona:3", "resnet152", 50)  # not shipped, re-derived from alpha/beta
    assert k3.boundaries == [11, 13] and "re-derived" in k3.source


def test_names_and_paths(tmp_path, monkeypatch):
    assert resolve_decoupling("resnet50_k8.json", "resnet50", 16) == load_decoupling("resnet50_k8")
    path = tmp_path / "mine.json"
    save_decoupling(uniform_decoupling("small", 6, 3, "aux2"), path)
    assert resolve_decoupling(str(path), "small", 6).heads == ["aux2", "aux2"]
    # An existing local file wins over the shipped name.
    monkeypatch.chdir(tmp_path)
    save_decoupling(uniform_decoupling("resnet50", 16, 2, "aux1"), tmp_path / "resnet50_k4.json")
    assert load_decoupling("resnet50_k4.json").heads == ["aux1"]


@pytest.mark.parametrize(
    "spec, arch, L, message",
    [
        ("dgl:7", "small", 6, r"K must be in 1..6"),
        ("dgl:0", "small", 6, r"K must be in 1..6"),
        ("predsim:x", "small", 6, r"K must be a whole number of blocks \(e.g. predsim:4\), got 'x'"),
        ("dgl:", "small", 6, r"K must be a whole number of blocks \(e.g. dgl:4\), got ''"),
        ("foo:2", "small", 6, r"unknown method 'foo'"),
        ("sedona:2", "small", 6, r"no searched decoupling shipped for arch 'small'"),
        ("sedona:17", "resnet50", 16, r"K must be in 1..16"),
        ("resnet999_k4", "small", 6, r"resnet999_k4: no such decoupling file, and not a shipped name"),
        ("resnet152_k4.json", "small", 6, r"made for arch 'resnet152', but the model is 'small'"),
        ("vgg19_k4", "resnet50", 16, r"made for arch 'vgg19', but the model is 'resnet50'"),
        ("resnet152_k4", "resnet152", 49, r"has 50 layers, but model 'resnet152' has 49"),
        ("", "small", 6, r"expected a file, a shipped name"),
    ],
)
def test_bad_specs(spec, arch, L, message):
    with pytest.raises(SedonaError, match=message):
        resolve_decoupling(spec, arch, L)


def test_load_decoupling_refuses_model_dependent_specs_with_a_user_message():
    with pytest.raises(SedonaError, match=r"'dgl:4' is built for a given network, not read from a file: name the "
                                          r"architecture too \(--arch\)"):
        load_decoupling("dgl:4")
    with pytest.raises(SedonaError, match=r"'dgl:two': K must be a whole number of blocks \(e.g. dgl:4\), got 'two'"):
        load_decoupling("dgl:two")


def test_retarget_places_cuts_proportionally_and_keeps_heads():
    assert retarget_boundaries([11, 13, 17], 50, 6) == [1, 2, 3]  # 1.32, 1.56 -> clamped 2, 2.04 -> 3
    assert retarget_boundaries([8], 16, 6) == [3]
    assert retarget_boundaries([4, 8, 12], 16, 8) == [2, 4, 6]
    assert retarget_boundaries([45, 47, 49], 50, 6) == [3, 4, 5]  # clamped to leave room for later blocks
    src = load_decoupling("vgg19_k4")
    dec = resolve_decoupling("vgg19_k4", "small", 6, allow_retarget=True)
    assert dec.arch == "small" and dec.num_layers == 6 and dec.K == 4 and dec.heads == src.heads
    assert dec.boundaries == retarget_boundaries(src.boundaries, 16, 6)
    assert dec.source.startswith("retargeted from vgg19 (16 layers, cuts [6, 13, 14]) to small (6 layers)")
    assert dec.alpha is None  # the source network's alpha/beta do not describe this one
    assert retarget(src, "vgg19", 16) is src
    with pytest.raises(SedonaError, match="cannot retarget 16 blocks onto a network of 6 layers"):
        retarget(load_decoupling("vgg19_k16"), "small", 6)
