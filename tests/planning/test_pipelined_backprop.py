"""The pipelined-backprop model (GPipe, 1F1B over K stages, M micro-batches): bubble, messages, memory, by hand."""
from __future__ import annotations

import pytest

from sedona_runtime.planning.cost_model import CostModel
from sedona_runtime.planning.layouts import ACTIVATION_FACTOR, Hardware, ddp_fastest_sentence, layout, rank
from sedona_runtime.planning.pipelined_backprop import (PIPELINED_SLOWDOWN, StageTimes, balanced_boundaries,
                                                        in_flight, microbatch_counts, pipelined_layout,
                                                        pipelined_step, schedule_order, stage_times,
                                                        stage_times_from_profile)
from sedona_runtime.utils.errors import SedonaError

from test_layouts import GBPS, MB, toy


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("K,M", [(2, 4), (4, 4), (4, 8), (3, 7)])
def test_equal_stages_pay_the_textbook_bubble(schedule, K, M):
    """(M + K - 1) (f + b): M slots of work and K - 1 of fill and drain, for both schedules."""
    step = pipelined_step([StageTimes(1.0, 2.0)] * K, M, schedule)
    assert step.step_s == pytest.approx((M + K - 1) * 3.0)
    assert step.busy_s == pytest.approx([M * 3.0] * K)
    assert step.bubble_s == pytest.approx([(K - 1) * 3.0] * K)


def test_unequal_stages_gpipe_by_hand_and_1f1b_differs():
    """GPipe: the forward wave then the backward wave, each sum_k + (M - 1) x its slowest stage."""
    stages = [StageTimes(2.0, 1.0), StageTimes(1.0, 2.0)]  # stage 1 slow forward, stage 2 slow backward
    # F: 2 + 1 + 3 x 2 = 9; B: 1 + 2 + 3 x 2 = 9
    assert pipelined_step(stages, 4, "gpipe").step_s == pytest.approx(18.0)
    # 1F1B alternates F and B on each stage, so the slowest f + b (3) sets the pace: s1 F0 [0,2] F1 [2,4];
    # s2 F0 [2,3] B0 [3,5]; s1 B0 [5,6] F2 [6,8]; s2 F1 [5,6] B1 [6,8]; s1 B1 [8,9] F3 [9,11]; s2 F2 [8,9]
    # B2 [9,11]; s1 B2 [11,12]; s2 F3 [11,12] B3 [12,14]; s1 B3 [14,15]
    assert pipelined_step(stages, 4, "1f1b").step_s == pytest.approx(15.0)
    same = [StageTimes(1.0, 2.0), StageTimes(2.0, 4.0)]  # the same stage slowest both ways: both 3 + 6 + 3 x 6
    assert pipelined_step(same, 4, "gpipe").step_s == pytest.approx(27.0)
    assert pipelined_step(same, 4, "1f1b").step_s == pytest.approx(27.0)


def test_messages_each_way_and_the_optimizer_step():
    """Each edge carries the activation forward and its gradient backward: one message per wave's fill
    (the rest hide behind the compute while shorter); stage 1's optimizer step ends every step."""
    stages = [StageTimes(1.0, 2.0), StageTimes(2.0, 4.0)]
    assert pipelined_step(stages, 4, "gpipe", [0.5]).step_s == pytest.approx(27.0 + 2 * 0.5)
    slow = pipelined_step(stages, 4, "gpipe", [3.0])  # a message slower than the stage: the link paces a wave
    assert slow.step_s == pytest.approx((1 + 3 + 2 + 3 * 3.0) + (4 + 3 + 2 + 3 * 4.0))
    with_opt = [StageTimes(1.0, 2.0, 0.25), StageTimes(1.0, 2.0, 0.125)]
    assert pipelined_step(with_opt, 4, "gpipe").step_s == pytest.approx(5 * 3.0 + 0.25)
    assert pipelined_step(with_opt, 4, "gpipe").busy_s == pytest.approx([12.25, 12.125])


def test_1f1b_holds_fewer_micro_batches_than_gpipe():
    assert [in_flight("1f1b", k, 4, 8) for k in range(4)] == [4, 3, 2, 1]
    assert [in_flight("gpipe", k, 4, 8) for k in range(4)] == [8, 8, 8, 8]
    assert schedule_order("1f1b", 1, 2, 3) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]
    assert schedule_order("1f1b", 0, 2, 3) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]


def test_stage_times_split_the_step_cost_per_micro_batch():
    cm, _ = toy()  # layers 0.4 / 0.2 / 0.2 s, classifier 0.2 s at the whole batch
    s1, s2 = stage_times(cm, [1], 4, slowdown=1.0)
    assert (s1.forward_s, s1.backward_s) == pytest.approx((0.4 / 4 / 3, 0.4 / 4 * 2 / 3))  # forward : backward 1 : 2
    assert s2.forward_s + s2.backward_s == pytest.approx(0.6 / 4)  # the classifier on the last stage
    d1, _ = stage_times(cm, [1], 4)  # by default the measured in-pipeline slowdown (module docstring)
    assert d1.forward_s == pytest.approx(s1.forward_s * PIPELINED_SLOWDOWN)
    profile = {"layers": [{"index": i, "fwd_s": 0.1 * i, "bwd_s": 0.3 * i, "opt_s": 0.01} for i in (1, 2, 3)],
               "classifier": {"fwd_s": 0.05, "bwd_s": 0.05, "opt_s": 0.02}}
    p1, p2 = stage_times_from_profile(profile, [2], 2, slowdown=1.0)
    assert (p1.forward_s, p1.backward_s, p1.optimizer_s) == pytest.approx((0.15, 0.45, 0.02))  # opt once a step
    assert (p2.forward_s, p2.backward_s, p2.optimizer_s) == pytest.approx((0.175, 0.475, 0.03))
    # a profile taken at the micro-batch size itself; the slowdown is not charged to the optimizer step
    (whole,) = stage_times_from_profile(profile, [], 8, slowdown=2.0, scale=1.0)
    assert (whole.forward_s, whole.optimizer_s) == pytest.approx((1.3, 0.05))


def test_balanced_cut_minimises_the_slowest_stage():
    cm = CostModel(arch="toy", num_layers=5, unit="s", layer_cost=[3.0, 1.0, 4.0, 1.0, 5.0], head_cost={},
                   classifier_cost=0.2)
    assert balanced_boundaries(cm, 1) == ()
    assert balanced_boundaries(cm, 2) == (3,)       # 8 | 6.2 (not 4 | 10.2, 9 | 5.2)
    assert balanced_boundaries(cm, 3) == (2, 4)     # 4 | 5 | 5.2
    assert balanced_boundaries(cm, 5) == (1, 2, 3, 4)
    with pytest.raises(SedonaError, match="need 1 <= K <= 5"):
        balanced_boundaries(cm, 6)


def test_planner_layout_memory_link_and_ranking():
    cm, net = toy()
    hw = Hardware(devices=2, hosts=2, link_gbps=1.0, latency_s=0.0)
    lay = pipelined_layout(cm, net, hw, 8, [1], 4, "1f1b")
    msg = 1000 * 2 / GBPS  # layer 1's output x 2 samples per micro-batch over 1 Gbit/s, each way
    want = pipelined_step(stage_times(cm, [1], 4, PIPELINED_SLOWDOWN), 4, "1f1b", [msg])
    assert lay.step_s == pytest.approx(want.step_s) and lay.speedup == pytest.approx(1.0 / want.step_s)
    assert (lay.kind, lay.name, lay.R, lay.cut) == ("1F1B", "1F1B 2 stages, 4 micro-batches", 1, "balanced")
    assert lay.link_s == pytest.approx(4 * msg)  # four activations one way per step (and four gradients back)
    # stage 1 holds 2 micro-batches of 2 samples (1F1B), stage 2 one, plus its input; weights x 3 (SGD momentum)
    assert lay.stages[0].peak_bytes == pytest.approx(10 * MB * 3 + 2 * 1000 * 2 * ACTIVATION_FACTOR)
    assert lay.stages[1].peak_bytes == pytest.approx(55 * MB * 3 + 1 * (750 * 2 * ACTIVATION_FACTOR + 1000 * 2))
    gpipe = pipelined_layout(cm, net, hw, 8, [1], 4, "gpipe")
    assert gpipe.stages[0].peak_bytes > lay.stages[0].peak_bytes  # all four micro-batches in flight
    ddp = layout(cm, net, Hardware(devices=2, local_gbps=1e4), 8, [(1, 3, None)], R=2)
    fast_pipe = pipelined_layout(cm, net, Hardware(devices=2, local_gbps=1e4), 8, [1], 4, "gpipe")
    ranked = rank([fast_pipe, ddp])
    assert ranked[0] is ddp and "the best greedy" not in ddp_fastest_sentence(ranked)  # a peer is not greedy
    assert ddp_fastest_sentence(rank([fast_pipe])) is None


def test_counts_and_refusals():
    assert microbatch_counts(2, 32) == [2, 4, 8]
    assert microbatch_counts(3, 64) == [4, 8, 16]   # the smallest divisors from K, 2K, 4K up
    assert microbatch_counts(8, 64) == [8, 16]      # micro-batches of at least 4 samples
    assert microbatch_counts(16, 32) == []
    with pytest.raises(SedonaError, match="1F1B needs at least as many micro-batches"):
        pipelined_step([StageTimes(1.0, 2.0)] * 4, 2, "1f1b")
    with pytest.raises(SedonaError, match="schedule must be one of"):
        pipelined_step([StageTimes(1.0, 2.0)] * 2, 2, "zb")
    with pytest.raises(SedonaError, match="increase strictly"):
        stage_times(toy()[0], [2, 2], 2)
    with pytest.raises(SedonaError, match="does not split into 3 micro-batches"):
        pipelined_layout(*toy(), Hardware(devices=2), 8, [1], 3, "gpipe")
