"""One placement rule for both launch modes, the shared-resource notes, and the p2p edge plan."""
from __future__ import annotations

import pytest
import torch

from sedona_runtime.pipeline import affinity
from sedona_runtime.pipeline.p2p_group import nccl_edges
from sedona_runtime.pipeline.placement import local_placements, place_block, sharing_notes


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has N GPUs (placement only reads the count)."""

    def _set(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return _set


@pytest.fixture
def cores(monkeypatch):
    def _set(n: int) -> None:
        monkeypatch.setattr(affinity, "available_cores", lambda: list(range(n)))

    return _set


def test_self_launch_puts_block_i_on_gpu_i_minus_1(gpus, cores):
    gpus(4)
    cores(8)
    places = local_placements("auto", None, 0, 4)
    assert [p.device for p in places] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert [p.next_device for p in places] == ["cuda:1", "cuda:2", "cuda:3", None]
    assert [p.cores for p in places] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_torchrun_uses_the_same_rule(gpus, cores):
    """Two machines, 3 + 2 processes, 2 GPUs each: the coordinator (rank 0) takes no GPU slot."""
    gpus(2)
    cores(4)
    # machine 0: ranks 0 (coordinator), 1, 2; machine 1: ranks 3, 4 (local ranks 0, 1)
    got = [place_block("auto", None, 0, rank, local, size) for rank, local, size in
           [(1, 1, 3), (2, 2, 3), (3, 0, 2), (4, 1, 2)]]
    assert [p.device for p in got] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert [p.cores for p in got] == [[0, 1], [2, 3], [0, 1], [2, 3]]
    # The next block is known only when it runs on the same machine (device maps need both ends).
    assert [p.next_device for p in got] == ["cuda:1", None, "cuda:1", None]
    # The same process layout as a self-launched run places the blocks the same way.
    one_machine = [place_block("auto", None, 0, r, r, 5) for r in range(1, 5)]
    assert [p.device for p in one_machine] == [p.device for p in local_placements("auto", None, 0, 4)]


def test_cpu_and_explicit_devices(gpus, cores):
    gpus(2)
    cores(2)
    assert {p.device for p in local_placements("cpu", None, 1, 3)} == {"cpu"}
    places = local_placements("cuda:1,cpu,cuda:0", ["cuda:1", "cpu", "cuda:0"], 0, 3)
    assert [p.device for p in places] == ["cuda:1", "cpu", "cuda:0"]
    assert [p.next_device for p in places] == ["cpu", "cuda:0", None]


def test_sharing_is_said_once_per_resource():
    four_on_one_gpu = {i: {"device": "cuda:0", "host": "h"} for i in range(1, 5)}
    assert sharing_notes(four_on_one_gpu) == ["blocks 1, 2, 3, 4 share cuda:0 on h: they run, but take turns on one GPU"]
    cpu = {i: {"device": "cpu", "host": "h", "cores": [i % 2]} for i in range(1, 4)}
    assert sharing_notes(cpu) == ["3 blocks share 2 CPU cores on h round-robin: they run, but do not each get a "
                                  "core of their own"]
    apart = {1: {"device": "cuda:0", "host": "a"}, 2: {"device": "cuda:0", "host": "b"}}
    assert sharing_notes(apart) == []


def test_nccl_only_between_two_different_gpus():
    p = {1: {"device": "cuda:0", "host": "a"}, 2: {"device": "cuda:1", "host": "a"},
         3: {"device": "cuda:1", "host": "a"}, 4: {"device": "cuda:1", "host": "b"}, 5: {"device": "cpu", "host": "b"}}
    # 1->2 different GPUs; 2->3 the same GPU (NCCL cannot pair one device); 3->4 other machine; 4->5 a CPU end.
    assert nccl_edges(p, 5) == [(1, 2), (3, 4)]


def test_device_names_are_normalised_in_one_place(gpus):
    gpus(1)
    assert affinity.normalize_device("cuda") == affinity.normalize_device("cuda:0") == "cuda:0"
    assert affinity.normalize_device(torch.device("cuda", 3)) == "cuda:3"
    assert affinity.normalize_device("cpu") == "cpu"
    # `cuda,cuda:0` is one GPU twice: normalised, so the edge plan and the device maps see one name.
    assert affinity.parse_devices("cuda,cuda:0", 2) == ["cuda:0", "cuda:0"]
    places = local_placements("cuda,cuda:0", affinity.parse_devices("cuda,cuda:0", 2), 0, 2)
    assert [p.device for p in places] == ["cuda:0", "cuda:0"] and places[0].next_device == "cuda:0"


def test_same_gpu_is_decided_by_host_and_index():
    one = {1: {"device": "cuda", "host": "a"}, 2: {"device": "cuda:0", "host": "a"}}
    assert affinity.same_gpu(one[1], one[2]) and nccl_edges(one, 2) == []  # no NCCL pair on one GPU
    assert sharing_notes(one) == ["blocks 1, 2 share cuda:0 on a: they run, but take turns on one GPU"]
    apart = {1: {"device": "cuda", "host": "a"}, 2: {"device": "cuda:0", "host": "b"}}
    assert not affinity.same_gpu(apart[1], apart[2]) and nccl_edges(apart, 2) == [(1, 2)]
    assert not affinity.same_gpu({"device": "cpu", "host": "a"}, {"device": "cpu", "host": "a"})
