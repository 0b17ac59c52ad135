"""Shipped SEDONA decouplings: regenerated from the released alpha/beta and checked against the paper."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sedona_runtime.decoupling import list_shipped, load_decoupling, resolve_decoupling, validate_for
from sedona_runtime.decoupling.discretize import boundary_scores

REPO = Path(__file__).resolve().parents[2]
# The released values are copied into the tests so the regeneration check always runs.
REFERENCE = Path(__file__).resolve().parent / "data" / "sedona-released-alpha-beta.json"
LAYERS = {"vgg19": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50}  # issue 2, section 2

# Appendix D.3, Tables 10-13: layer indices l with the largest learned alpha(l), best first, and the
# aux header (argmax beta(l)) of each. A layer index is the 1-based layer the cut follows.
PAPER_TABLES = {
    "resnet152": ([11, 13, 17, 19, 22, 23, 25, 26, 28, 29, 49, 31, 48, 38, 37, 36],
                  [4, 4, 4, 3, 2, 4, 2, 2, 4, 2, 4, 2, 4, 4, 4, 4]),
    "resnet101": ([7, 11, 12, 22, 25, 27, 28, 29, 19, 32, 31, 30, 26, 24, 23, 20],
                  [4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 2, 4, 4, 4, 4, 4]),
    "resnet50": ([10, 12, 11, 13, 15, 14, 9, 6, 5, 2, 8, 4, 3, 1, 7],
                 [4, 4, 4, 4, 4, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1]),
    "vgg19": ([6, 13, 14, 15, 12, 11, 8, 9, 7, 10, 4, 5, 2, 1, 3],
              [4, 1, 1, 1, 1, 2, 1, 4, 1, 4, 1, 1, 1, 1, 1]),
}


def _maker():
    spec = importlib.util.spec_from_file_location("make_shipped", REPO / "tools" / "make_shipped_decouplings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_arch_and_K_is_shipped_and_fits_its_model():
    names = list_shipped()
    assert names == sorted(f"{a}_k{k}" for a in LAYERS for k in (2, 4, 8, 16))
    for name in names:
        arch, k = name.rsplit("_k", 1)
        for spelled in (name, name + ".json"):
            dec = load_decoupling(spelled)
            validate_for(dec, arch, LAYERS[arch])
            assert dec.K == int(k) and dec.source.startswith("SEDONA (ICLR 2021) released alpha/beta")
            assert len(dec.alpha) == LAYERS[arch] - 1 and dec.head_pool == ["aux1", "aux2", "aux3", "aux4"]


def test_shipped_files_equal_a_fresh_regeneration():
    maker = _maker()
    fresh = maker.build_all(REFERENCE)
    assert sorted(fresh) == list_shipped()
    for name, dec in fresh.items():
        assert load_decoupling(name) == dec, name


def test_known_decouplings():
    r152 = load_decoupling("resnet152_k4")
    assert r152.boundaries == [11, 13, 17] and r152.heads == ["aux4"] * 3
    assert [(b.first, b.last) for b in r152.blocks] == [(1, 11), (12, 13), (14, 17), (18, 50)]
    vgg = load_decoupling("vgg19_k4")
    assert vgg.boundaries == [6, 13, 14] and vgg.heads == ["aux4", "aux1", "aux1"]


def test_reference_copy_holds_the_paper_tables():
    # The copy's paper_table is the paper's (transcribed above from Appendix D.3), so the shipped files'
    # ranking is too.
    ref = json.loads(REFERENCE.read_text())["architectures"]
    for arch, (layers, heads) in PAPER_TABLES.items():
        assert ref[arch]["paper_table"] == {"layers_by_alpha": layers, "aux_head": heads}, arch


@pytest.mark.parametrize("arch", sorted(PAPER_TABLES))
def test_every_shipped_file_follows_the_paper_table(arch):
    """Tables 10-13 list at least K-1 = 15 layers for every arch, so each shipped file's cuts are the
    table's first K-1 layers and each cut's head is the table's, with no tie rule involved."""
    layers, heads = PAPER_TABLES[arch]
    by_layer = {layer: f"aux{h}" for layer, h in zip(layers, heads)}
    for k in (2, 4, 8, 16):
        dec = load_decoupling(f"{arch}_k{k}")
        assert dec.boundaries == sorted(layers[: k - 1]), (arch, k)
        assert dec.heads == [by_layer[c] for c in dec.boundaries], (arch, k)
        assert dec.ranking == [[layer, by_layer[layer]] for layer in layers]


@pytest.mark.parametrize("arch", sorted(PAPER_TABLES))
def test_sedona_k_follows_the_same_rule(arch):
    """sedona:K equals the shipped file at the shipped K and, beyond the table, takes the remaining
    boundaries by float64 score (exact ties -> earlier boundary) with argmax-beta heads."""
    layers, heads = PAPER_TABLES[arch]
    n = LAYERS[arch]
    for k in (2, 4, 8, 16):
        assert resolve_decoupling(f"sedona:{k}", arch, n).blocks == load_decoupling(f"{arch}_k{k}").blocks
    base = load_decoupling(f"{arch}_k2")
    scores = boundary_scores(base.alpha)
    rest = sorted((x for x in range(1, n) if x not in layers), key=lambda x: (-scores[x - 1], x))
    order = layers + rest
    for k in range(1, n + 1):
        dec = resolve_decoupling(f"sedona:{k}", arch, n)
        assert dec.boundaries == sorted(order[: k - 1]), (arch, k)
        for cut, head in zip(dec.boundaries, dec.heads):
            if cut not in layers:
                row = base.beta[cut - 1]
                assert head == f"aux{row.index(max(row)) + 1}", (arch, k, cut)
