"""What of the CUDA hand-off a CPU can check: tensors are contiguous before the event a sender waits for,
the NCCL groups get the run's timeout, --iface reaches NCCL. (The CUDA behaviour itself: test_cuda.py and
benchmarks/gpu/transport_check.py.)"""
from __future__ import annotations

import datetime

import torch

from sedona_runtime.pipeline import cuda_handoff, p2p_group, rendezvous, wire
from sedona_runtime.pipeline.messages import Batch


def test_strided_tensors_are_made_contiguous_before_a_fresh_ready_event():
    log: list[str] = []
    x = torch.arange(24.0).view(1, 2, 3, 4).to(memory_format=torch.channels_last)  # strided as NCHW
    y = torch.arange(4)

    def record():  # a recording stand-in for "record an event on the producer's stream now"
        log.append("event")
        return "fresh"

    orig = torch.Tensor.contiguous

    def contiguous(self, *a, **k):
        if not self.is_contiguous(*a, **k):
            log.append("copy")
        return orig(self, *a, **k)

    torch.Tensor.contiguous = contiguous
    try:
        item, ready = cuda_handoff.contiguous_before_send(Batch(3, x, y), "ready", record)
    finally:
        torch.Tensor.contiguous = orig
    assert log == ["copy", "event"] and ready == "fresh"  # the copy is queued before the event the send waits on
    assert item.x.is_contiguous() and torch.equal(item.x, x) and item.y is y
    # Nothing to copy: the producer's own event stands, no new one.
    same, ready = cuda_handoff.contiguous_before_send(Batch(3, item.x, y), "ready", record)
    assert ready == "ready" and same.x is item.x and log == ["copy", "event"]


def test_wire_still_encodes_strided_host_tensors():
    x = torch.arange(6.0).view(2, 3).t()
    header, tail, tensors = wire.encode(Batch(0, x, torch.zeros(2)))
    skeleton, specs = wire.decode(header, tail)
    assert torch.equal(wire.fill(skeleton, tensors).x, x) and tensors[0].is_contiguous()


def test_nccl_edge_groups_get_the_runs_timeout(monkeypatch):
    calls = []
    monkeypatch.setattr(p2p_group.dist, "init_process_group", lambda *a, **k: calls.append(("gloo", k["timeout"])))
    monkeypatch.setattr(p2p_group.dist, "new_group", lambda ranks, **k: calls.append((k["backend"], k.get("timeout"))))
    monkeypatch.setattr(p2p_group.dist, "PrefixStore", lambda prefix, store: store)
    p2p_group.join(object(), 1, 3, 1800.0, [(1, 2)])
    limit = datetime.timedelta(seconds=1800)
    assert calls == [("gloo", limit), ("nccl", limit)]  # not NCCL's default 10 minutes


def test_iface_reaches_nccl_too():
    env = rendezvous.interface_env("eth7")
    assert env == {"TP_SOCKET_IFNAME": "eth7", "GLOO_SOCKET_IFNAME": "eth7", "NCCL_SOCKET_IFNAME": "eth7"}
    assert rendezvous.interface_env(None) == {}


def test_host_items_for_a_cpu_consumer_pass_unchanged():
    item = Batch(0, torch.ones(2), torch.zeros(2))
    assert cuda_handoff.on_arrival(item, torch.device("cpu")) is item
    assert cuda_handoff.on_take(item) is item
