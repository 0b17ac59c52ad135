"""Replica layouts (which rank runs which block replica), the shard rule and the replicas' gradient average."""
from __future__ import annotations

import datetime
import threading

import pytest
import torch
import torch.distributed as dist

from sedona_runtime.pipeline.messages import Batch
from sedona_runtime.pipeline.grad_sync import GradSync
from sedona_runtime.pipeline.replicas import Layout, check_shards, shard_batch
from sedona_runtime.utils.errors import SedonaError


@pytest.mark.parametrize("placement", ["rows", "blocks"])
def test_every_layout_is_a_bijection_with_rows_of_replicas(placement):
    lay = Layout(3, 2, placement)
    pairs = [lay.block_of(rank) for rank in range(1, lay.world_size)]
    assert sorted(pairs) == [(k, r) for k in (1, 2, 3) for r in (0, 1)]
    assert all(lay.rank_of(*lay.block_of(rank)) == rank for rank in range(1, lay.world_size))
    # Replica r of block k feeds replica r of block k+1; the coordinator feeds every replica of block 1.
    assert lay.next_ranks(0) == [lay.rank_of(1, 0), lay.rank_of(1, 1)]
    for rank in range(1, lay.world_size):
        k, r = lay.block_of(rank)
        assert lay.next_ranks(rank) == ([] if k == 3 else [lay.rank_of(k + 1, r)])
        assert lay.prev_rank(rank) == (0 if k == 1 else lay.rank_of(k - 1, r))
    assert len(lay.edges()) == 4 and len({lay.name(rank) for rank in range(lay.world_size)}) == 7


def test_rank_orders_and_names():
    assert [Layout(2, 2, "rows").block_of(i) for i in (1, 2, 3, 4)] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert [Layout(2, 2, "blocks").block_of(i) for i in (1, 2, 3, 4)] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    one = Layout(4)  # R = 1 is today's runtime: rank i is block i, named block{i}
    assert [one.block_of(i) for i in (1, 2, 3, 4)] == [(i, 0) for i in (1, 2, 3, 4)]
    assert [one.name(i) for i in range(5)] == ["coord", "block1", "block2", "block3", "block4"]
    assert one.edges() == [(1, 2), (2, 3), (3, 4)] and one.label(2) == "block2"
    assert Layout(2, 2).name(3) == "block1_r1" and Layout(2, 2).label(3) == "block1 replica 1"


def test_placements_follow_the_replica_rows(monkeypatch):
    from sedona_runtime.pipeline import affinity
    from sedona_runtime.pipeline.placement import local_placements

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(affinity, "available_cores", lambda: list(range(8)))
    places = local_placements("auto", None, 0, 2, Layout(2, 2, "blocks"))
    assert [p.device for p in places] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    # blocks: rank 1 (block 1 replica 0) feeds rank 3 (block 2 replica 0), rank 2 feeds rank 4
    assert [p.next_device for p in places] == ["cuda:2", "cuda:3", None, None]


def test_shards_split_x_labels_and_draws_and_one_replica_is_the_batch():
    x, y = torch.arange(8 * 3).view(8, 3), torch.arange(8)
    b = Batch(5, x, y, {"flip": torch.arange(8) % 2 == 0}, raw=True)
    assert shard_batch(b, 1) == [b] and shard_batch(b, 1)[0] is b
    shards = shard_batch(b, 2)
    assert [s.step for s in shards] == [5, 5] and all(s.raw for s in shards)
    assert torch.equal(torch.cat([s.x for s in shards]), x) and torch.equal(torch.cat([s.y for s in shards]), y)
    assert torch.equal(shards[1].draws["flip"], b.draws["flip"][4:])
    check_shards(32, 2)
    with pytest.raises(SedonaError, match="does not split into --replicas 3"):
        check_shards(32, 3)


def _synced(R: int, **buckets) -> tuple[list[torch.nn.Module], list[list[torch.Tensor]]]:
    """R replicas (threads here, one gloo group on one store) of a small float64 net, each running backward on
    its own input with GradSync hooked in; and each replica's own gradients (from an unhooked copy)."""
    import copy

    store = dist.HashStore()
    gen = torch.Generator().manual_seed(R)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(50, 20), torch.nn.Tanh(), torch.nn.Linear(20, 5)).double()
    nets = [copy.deepcopy(net) for _ in range(R)]
    xs = [torch.randn(8, 50, generator=gen, dtype=torch.float64) for _ in range(R)]
    before = []
    for x in xs:
        plain = copy.deepcopy(net)
        plain(x).square().sum().backward()
        before.append([p.grad.clone() for p in plain.parameters()])
    errors: list = []

    def replica(r: int) -> None:
        try:
            group = dist.ProcessGroupGloo(dist.PrefixStore("g", store), r, R, datetime.timedelta(seconds=30))
            sync = GradSync(group, nets[r], R, 30.0, **buckets)
            for _ in range(2):  # twice: the buckets are reset for the next step
                nets[r].zero_grad(set_to_none=True)
                nets[r](xs[r]).square().sum().backward()
                sync()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(r,)) for r in range(R)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return nets, before


@pytest.mark.parametrize("buckets", [{}, {"bucket_bytes": 200, "first_bucket_bytes": 100}])
def test_grad_sync_of_two_is_the_shard_average_bitwise(buckets):
    """R = 2: g0/2 + g1/2 in either order, the sharded reference's sum (training/sharded.py); in one bucket
    or in several launched during backward."""
    nets, before = _synced(2, **buckets)
    import copy

    # small buckets: [last bias, last weight] leaves during backward, [first bias, first weight] after
    assert len(GradSync(None, copy.deepcopy(nets[0]), 2, 1.0, **buckets).buckets) == (1 if not buckets else 2)
    want = [a / 2 + b / 2 for a, b in zip(*before)]
    for net in nets:
        assert all(torch.equal(p.grad, w) for p, w in zip(net.parameters(), want))


def test_grad_sync_of_three_is_within_the_derived_bound():
    """R = 3: gloo may add the shares in another order than the reference's shard order. Two orders of a
    sum of R terms t_r = g_r / R differ by at most (R - 1) * eps * sum_r |t_r| (each is within (R - 1) * u
    * sum |t_r| of the exact sum, u = eps / 2); every replica holds the same bits."""
    R = 3
    nets, before = _synced(R)
    eps = torch.finfo(torch.float64).eps
    for i, p in enumerate(nets[0].parameters()):
        terms = [b[i] / R for b in before]
        ref = terms[0] + terms[1] + terms[2]
        bound = (R - 1) * eps * sum(t.abs() for t in terms)
        assert ((p.grad - ref).abs() <= bound).all()
        assert all(torch.equal(p.grad, list(net.parameters())[i].grad) for net in nets[1:])
