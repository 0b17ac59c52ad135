"""The benchmark's peers (torch DDP, GPipe, 1F1B), its load probe and the --replicas rows' commands (the
peers' end-to-end run is in test_speedup.py's test_benchmark_runs_and_writes_every_figure)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import speedup  # noqa: E402
from speedup_lib.load import DISTURBED_CORES, load_between, parse_proc_stat, robust_median  # noqa: E402
from speedup_lib.measure import BenchConfig  # noqa: E402
from speedup_lib.peers import Peer, parse_peers  # noqa: E402
from speedup_lib.replicas import ReplicaRow, replica_rows  # noqa: E402
from speedup_lib.rows import all_rows, summarize_row  # noqa: E402

from sedona_runtime.utils.errors import SedonaError  # noqa: E402

TINY = ["--arch", "small", "--image-size", "8", "--batch-size", "16", "--warmup", "1", "--steps", "3",
        "--repeats", "1", "--device", "cpu"]


def test_proc_stat_busy_time_leaves_out_idle_and_iowait():
    text = "cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    import os
    assert parse_proc_stat(text) == pytest.approx((100 + 20 + 30 + 5 + 5 + 10) / os.sysconf("SC_CLK_TCK"))
    with pytest.raises(ValueError):
        parse_proc_stat("intr 1 2 3\n")


def test_other_load_is_the_machines_minus_our_own_and_flags_disturbed_runs():
    load = load_between((0.0, 100.0, 10.0), (10.0, 115.0, 22.0))  # 1.5 cores busy, 1.2 of them ours
    assert load.other_cores == pytest.approx(0.3) and load.disturbed == (0.3 > DISTURBED_CORES)
    assert load_between((0.0, 0.0, 0.0), (1.0, 1.0, 1.1)).other_cores == 0.0  # never negative
    # the median is over the undisturbed runs when at least two and half of them are, else over all
    assert robust_median([1.0, 9.0, 2.0, 3.0], [False, True, False, False]) == (2.0, True)
    assert robust_median([1.0, 9.0, 8.0], [False, True, True]) == (8.0, False)


def test_rows_carry_speedup_memory_algorithm_and_loads():
    loads = [{"other_cores": 0.05, "disturbed": False}, {"other_cores": 1.2, "disturbed": True},
             {"other_cores": 0.1, "disturbed": False}]
    samples = [{"step_s": 0.2, "peak_memory_bytes": 2**30}, {"step_s": 0.5}, {"step_s": 0.25}]
    row = summarize_row("DDP x 2", "backprop (BatchNorm per shard)", samples, loads, 0.45, 32, 0.2)
    assert row["step_s"] == pytest.approx(0.225) and row["median_over_undisturbed"]
    assert row["speedup"] == pytest.approx(2.0) and row["samples_per_s"] == pytest.approx(32 / 0.225)
    assert (row["min_s"], row["max_s"], row["disturbed"]) == (0.2, 0.5, 1)
    pipeline = summarize_row("greedy", "greedy", [{"step_s": 1.0, "blocks": [{"peak_memory_bytes": 5},
                                                                          {"peak_memory_bytes": 7}]}],
                             loads[:1], 1.0, 32)
    assert pipeline["peak_memory_bytes"] == 7
    (cells,) = all_rows([row])
    assert cells[:6] == ["DDP x 2", "225.0", "200-500", "2.00", "142", "1024"] and cells[-1] == "200 (-11.1%)"
    assert cells[7] == "1/3 (0.05 1.20 0.10)"


def test_peers_parse_and_refuse_unknown_names():
    assert parse_peers("ddp,gpipe,1f1b", 2, (4, 8)) == [Peer("ddp", 2), Peer("gpipe", 2, 4), Peer("gpipe", 2, 8),
                                                       Peer("1f1b", 2, 4), Peer("1f1b", 2, 8)]
    with pytest.raises(SedonaError, match="--peers: zero"):
        parse_peers("ddp,zero", 2)


def test_replica_rows_are_runtime_ddp_and_k_by_r():
    rows = replica_rows(4, 2, "planned.json", "p2p")
    assert rows == [ReplicaRow(1, 4, "backprop", "p2p"), ReplicaRow(2, 2, "planned.json", "p2p")]
    assert replica_rows(2, 2, "planned.json", "p2p") == [ReplicaRow(1, 2, "backprop", "p2p")]


def test_bad_peer_settings_are_one_line(tmp_path, capsys):
    for args in (["--peers", "ddp,zero"], ["--microbatches", "3"], ["--devices", "3"]):
        assert speedup.main([*TINY, *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
