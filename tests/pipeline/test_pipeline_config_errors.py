"""Bad pipeline configurations fail with one clear line before any process starts or any step runs."""
from __future__ import annotations

import socket

import psutil
import pytest
import torch

from sedona_runtime.cli.greedy import main
from sedona_runtime.pipeline.affinity import core_sets

pytestmark = pytest.mark.timeout(60)

BASE = ["--decoupling", "dgl:3", "--arch", "small", "--steps", "2", "--plain"]


def _fails(argv, capsys, tmp_path, match: str) -> None:
    # Processes this pytest already runs (an earlier test's multiprocessing resource tracker) are not ours.
    before = {p.pid for p in psutil.Process().children()}
    code = main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and match in err and "Traceback" not in err, err
    started = [p for p in psutil.Process().children() if p.pid not in before]
    assert not started, f"a process was started: {started}"
    assert not (tmp_path / "run" / "checkpoints" / "pipeline.json").exists()


def test_world_size_must_be_one_or_k_plus_one(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    _fails(["--blocks", "3", *BASE], capsys, tmp_path, "world size 3 does not fit --blocks 3")


def test_blocks_must_match_the_decoupling(capsys, tmp_path):
    _fails(["--blocks", "2", *BASE], capsys, tmp_path, "--blocks 2 does not match the decoupling 'dgl:3'")


def test_shipped_decoupling_k_mismatch(capsys, tmp_path):
    _fails(["--blocks", "3", "--decoupling", "resnet152_k4.json", "--steps", "2", "--plain"], capsys, tmp_path,
           "which has K = 4 blocks")


def test_port_in_use(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _fails(["--blocks", "3", *BASE, "--port", str(port)], capsys, tmp_path, f"--port {port} is already in use")


@pytest.mark.skipif(torch.cuda.device_count() >= 3, reason="needs fewer than 3 CUDA devices")
def test_devices_beyond_what_exists(capsys, tmp_path):
    _fails(["--blocks", "3", *BASE, "--devices", "cuda:0,cuda:1,cuda:2"], capsys, tmp_path, "does not exist")


def test_device_list_length(capsys, tmp_path):
    _fails(["--blocks", "3", *BASE, "--devices", "cpu,cpu"], capsys, tmp_path, "lists 2 device(s)")


def test_a_device_name_that_is_no_device(capsys, tmp_path):
    # One word that is not a device is a naming problem, not a list of the wrong length.
    _fails(["--blocks", "3", *BASE, "--devices", "gpu"], capsys, tmp_path, "'gpu' is not a device")


def test_core_sets_are_disjoint_or_round_robin():
    assert core_sets(2, [0, 1, 2, 3, 4]) == [[0, 1, 2], [3, 4]]
    # More blocks than cores (4 blocks on a 2-core machine): cores are shared round-robin.
    assert core_sets(4, [0, 1]) == [[0], [1], [0], [1]]


def test_existing_run_is_not_overwritten_silently(capsys, tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "pipeline.json").write_text('{"step": 6, "blocks": 3}')
    code = main(["--blocks", "3", *BASE, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and "--overwrite" in err, err
    assert (ck / "pipeline.json").is_file()


def test_resume_needs_a_committed_checkpoint(capsys, tmp_path):
    _fails(["--blocks", "3", *BASE, "--resume"], capsys, tmp_path, "config.json")  # nothing to resume


def test_a_queue_depth_whose_activations_cannot_fit_is_refused(capsys, tmp_path):
    _fails(["--blocks", "3", *BASE, "--queue-depth", "100000000"], capsys, tmp_path, "--queue-depth 100000000 lets up to")
    # The send window counts too, and is named when it is the one too large.
    _fails(["--blocks", "3", *BASE, "--window", "100000000"], capsys, tmp_path / "w", "--window 100000000 lets up to")


def test_queue_budget_counts_every_edge():
    from sedona_runtime.pipeline import queue_budget
    from sedona_runtime.training.config import TrainConfig, resolve_defaults
    from sedona_runtime.training.greedy import build_parts

    cfg = resolve_defaults(TrainConfig(decoupling="dgl:3", batch_size=8, device="cpu", out_dir=str("unused")))
    parts = build_parts(cfg)
    per_edge = queue_budget.item_bytes(parts, 8)
    c, h, w = parts.bundle.input_shape
    assert len(per_edge) == 3 and per_edge[0] == 8 * (c * h * w * 1 + 8)  # the raw uint8 images, and labels
    assert queue_budget.check(parts, 2, 2, 8, available=10**12) == 5 * sum(per_edge)
    # Room for 10 items per edge (half of 20): depth 100 is refused with the depth that fits beside window 2.
    with pytest.raises(Exception, match=r"--queue-depth 100 lets up to 103 items .* use --queue-depth 7 or less"):
        queue_budget.check(parts, 100, 2, 8, available=20 * sum(per_edge))
    with pytest.raises(Exception, match="use a smaller --batch-size"):  # not even one item in each place fits
        queue_budget.check(parts, 2, 2, 8, available=sum(per_edge))


def test_malformed_data_leaves_no_run_directory(capsys, tmp_path):
    import pickle

    data = tmp_path / "c10" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(data / name, "wb") as f:
            pickle.dump({"data": __import__("numpy").zeros((40, 3072), dtype="uint8"), "labels": [0] * 37}, f)
    _fails(["--blocks", "3", *BASE, "--dataset", "cifar10", "--data-dir", str(tmp_path / "c10")], capsys, tmp_path,
           "40 images but 37 labels")
    assert not (tmp_path / "run").exists()


def test_a_block_refuses_process_settings_that_disagree_with_the_coordinators(tmp_path):
    """Under torchrun every rank reads its own command line: a block started with another --transport, --window,
    ... than the coordinator's stops at its setup, one line naming the option (the coordinator reports it)."""
    import dataclasses

    from sedona_runtime.cli.greedy import _parser, build_config
    from sedona_runtime.pipeline.config import AGREED, PipelineConfig, agreed_settings, check_agrees
    from sedona_runtime.pipeline.placement import Placement
    from sedona_runtime.pipeline.rendezvous import Meeting
    from sedona_runtime.pipeline.worker import Stage
    from sedona_runtime.utils.errors import SedonaError

    # A block reads no training option (no decoupling file, no user code: the coordinator's spec has them).
    argv = ["--blocks", "3", "--decoupling", str(tmp_path / "only_on_the_coordinator.json"), "--model",
            "not_here.nets:build", "--transport", "p2p", "--window", "3"]
    block = build_config(_parser().parse_args(argv), block=True)
    coordinator = PipelineConfig(blocks=3)
    assert (block.transport, block.window) == ("p2p", 3)
    with pytest.raises(SedonaError, match=r"^block2 was started with --transport 'p2p', the coordinator \(rank 0\) "
                                          r"with 'rpc': start every rank with the same --transport$"):
        check_agrees(block, agreed_settings(coordinator), "block2")
    for name in AGREED:  # each setting is compared
        value = getattr(coordinator, name)
        other = dataclasses.replace(coordinator, **{name: (not value) if isinstance(value, bool) else
                                                    ("blocks" if name == "replica_placement" else
                                                     "p2p" if name == "transport" else value + 1)})
        with pytest.raises(SedonaError, match=f"--{name.replace('_', '-')} "):
            check_agrees(other, agreed_settings(coordinator), "block2")
    check_agrees(dataclasses.replace(coordinator, devices="cuda", threads=3, iface="eth0", port=5),
                 agreed_settings(coordinator), "block2")  # each machine's own
    # The block checks at its setup, before it builds anything from the spec.
    stage = Stage(block, 2, 4, Meeting(), Placement(rank=2))
    stage.setup = {"pipeline": agreed_settings(coordinator), "spec": None, "resume_step": None, "token": None}
    with pytest.raises(SedonaError, match="^started with --transport 'p2p', the coordinator"):
        stage.build()
