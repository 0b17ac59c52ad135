"""The layout cost model (K blocks x R replicas on G devices): hand-computed step times, link, memory, ranking."""
from __future__ import annotations

import pytest

from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.layouts import (ACTIVATION_FACTOR, Hardware, Network, host_of, layout, rank,
                                             ddp_fastest_sentence, ring_allreduce_s)
from sedona_runtime.utils.errors import SedonaError

MB = 1e6
GBPS = 1e9 / 8  # bytes/s of one Gbit/s


def toy() -> tuple[CostModel, Network]:
    """Three layers of 0.4 / 0.2 / 0.2 s, head h 0.1 s, classifier 0.2 s (baseline 1.0 s, batch 8)."""
    cm = CostModel(arch="toy", num_layers=3, unit="s", layer_cost=[0.4, 0.2, 0.2], head_cost={"h": [0.1, 0.1]},
                   classifier_cost=0.2, batch_size=8)
    net = Network(param_bytes=[10 * MB, 20 * MB, 30 * MB], head_param_bytes={"h": [1 * MB, 2 * MB]},
                  classifier_bytes=5 * MB, output_bytes=[1000.0, 500.0, 250.0])
    return cm, net


def test_ring_allreduce_is_two_r_minus_one_over_r_bytes_over_the_slowest_hop():
    hw = Hardware(devices=4, hosts=2, link_gbps=1.0, local_gbps=10.0, latency_s=0.0)
    assert ring_allreduce_s(8 * MB, [0], hw) == 0.0
    assert ring_allreduce_s(8 * MB, [0, 0], hw) == pytest.approx(8 * MB / (10 * GBPS))   # 2 (1)/2 = 1
    assert ring_allreduce_s(8 * MB, [0, 0, 1, 1], hw) == pytest.approx(1.5 * 8 * MB / GBPS)  # 2 x 3/4, link hop
    lat = Hardware(devices=4, latency_s=1e-3)
    assert ring_allreduce_s(0.0, [0, 0, 0, 0], lat) == pytest.approx(6e-3)  # 2 hops


def test_ddp_on_one_host_hand_computed():
    cm, net = toy()
    hw = Hardware(devices=2, local_gbps=1.0, latency_s=0.0, overlap=0.5)
    lay = layout(cm, net, hw, 8, [(1, 3, None)], R=2)
    params = 65 * MB                             # every layer + the classifier
    compute = 1.0 / 2                            # the baseline's 1.0 s over two shards
    allreduce = params / GBPS                    # 2 (R-1)/R = 1 at R = 2
    assert lay.stages[0].allreduce_s == pytest.approx(allreduce)  # 0.52 s
    assert lay.step_s == pytest.approx(compute + allreduce - 0.5 * compute)  # half the compute hides it
    assert lay.speedup == pytest.approx(1.0 / lay.step_s)
    assert lay.link_s == 0.0 and lay.kind == "DDP" and lay.cut == "backprop"


def test_greedy_two_blocks_across_a_link_hand_computed():
    cm, net = toy()
    hw = Hardware(devices=2, hosts=2, link_gbps=1e-5, latency_s=0.0)  # 1250 bytes/s
    lay = layout(cm, net, hw, 8, [(1, 1, "h"), (2, 3, None)], R=1)
    # block 1: 0.4 + head 0.1; block 2: 0.2 + 0.2 + classifier 0.2; the edge: 1000 bytes x batch 8 at 1250 B/s
    assert lay.stage_s[0] == pytest.approx(0.5)
    assert lay.stages[1].transfer_in_s == pytest.approx(6.4)
    assert lay.stage_s[1] == pytest.approx(6.4)  # transfer-bound: max(compute, transfer)
    assert lay.link_s == pytest.approx(6.4) and lay.step_s == pytest.approx(6.4)
    fast = layout(cm, net, Hardware(devices=2, hosts=2, link_gbps=100.0, latency_s=0.0), 8,
                  [(1, 1, "h"), (2, 3, None)], R=1)
    assert fast.step_s == pytest.approx(0.6) and fast.speedup == pytest.approx(1 / 0.6)


def test_placement_decides_what_crosses_the_link():
    hw = Hardware(devices=4, hosts=2, link_gbps=1.0)
    # rows: replica row r on host r (activations local); blocks: block k on host k (all-reduces local)
    assert [[host_of(k, r, 2, 2, "rows", hw) for r in range(2)] for k in range(2)] == [[0, 1], [0, 1]]
    assert [[host_of(k, r, 2, 2, "blocks", hw) for r in range(2)] for k in range(2)] == [[0, 0], [1, 1]]
    cm, net = toy()
    slow = Hardware(devices=4, hosts=2, link_gbps=1e-3, local_gbps=1e3, latency_s=0.0)
    blocks = [(1, 1, "h"), (2, 3, None)]
    rows = layout(cm, net, slow, 8, blocks, R=2, placement="rows")
    by_block = layout(cm, net, slow, 8, blocks, R=2, placement="blocks")
    # rows: both blocks' all-reduces cross: (11 + 55) MB one hop each way, 2 (R-1)/R = 1
    assert rows.link_s == pytest.approx(66 * MB / (1e-3 * GBPS))
    # blocks: only the activation shards cross (two of 1000 x 4 bytes, host 0 -> 1)
    assert by_block.link_s == pytest.approx(2 * 4000 / (1e-3 * GBPS))
    assert rank([rows, by_block])[0] is by_block


def test_memory_counts_weights_grads_state_activations_and_marks_what_does_not_fit():
    cm, net = toy()
    lay = layout(cm, net, Hardware(devices=2, memory_bytes=200 * MB), 8, [(1, 1, "h"), (2, 3, None)], R=1)
    b1 = 11 * MB * 3 + 1000 * 8 * ACTIVATION_FACTOR             # weights + grads + momentum, saved activations
    b2 = 55 * MB * 3 + (500 + 250) * 8 * ACTIVATION_FACTOR + 1000 * 8  # + its input
    assert [s.peak_bytes for s in lay.stages] == pytest.approx([b1, b2])
    assert lay.fits is True
    tight = layout(cm, net, Hardware(devices=2, memory_bytes=100 * MB), 8, [(1, 1, "h"), (2, 3, None)], R=1)
    assert tight.fits is False
    # one device cannot hold the whole network's 65 MB x 3, but each block fits: greedy wins by fitting
    hw = Hardware(devices=2, memory_bytes=180 * MB)
    ddp = layout(cm, net, hw, 8, [(1, 3, None)], R=1)
    greedy = layout(cm, net, hw, 8, [(1, 1, "h"), (2, 3, None)], R=1)
    assert ddp.fits is False and greedy.fits is True
    assert rank([ddp, greedy])[0] is greedy  # what does not fit ranks last


def test_ddp_sentence_and_bad_hardware():
    cm, net = toy()
    hw = Hardware(devices=2, local_gbps=1e4)
    ddp = layout(cm, net, hw, 8, [(1, 3, None)], R=2)
    greedy = layout(cm, net, hw, 8, [(1, 1, "h"), (2, 3, None)], R=1)
    assert "Plain data parallel backprop" in ddp_fastest_sentence(rank([greedy, ddp]))
    slow = Hardware(devices=2, hosts=2, link_gbps=1e-3)
    assert ddp_fastest_sentence(rank([layout(cm, net, slow, 8, [(1, 3, None)], R=2),
                                      layout(cm, net, slow, 8, [(1, 1, "h"), (2, 3, None)], R=1)])) is None
    for kw, msg in ((dict(devices=0), "--devices"), (dict(devices=2, link_gbps=-1.0), "--link-gbps"),
                    (dict(devices=2, hosts=3, link_gbps=1.0), "--hosts"), (dict(devices=2, hosts=2), "--link-gbps")):
        with pytest.raises(SedonaError, match=msg):
            Hardware(**kw)
    with pytest.raises(SedonaError, match="does not split"):
        layout(cm, net, Hardware(devices=3), 8, [(1, 3, None)], R=3)
