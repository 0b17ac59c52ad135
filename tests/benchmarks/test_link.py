"""benchmarks/link.py's pure parts: tc arguments, namespace commands, node command lines (CI makes no namespace)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from link_lib.commands import Job, ddp_command, greedy_command, node_env  # noqa: E402
from link_lib.netns import Pair, rate_bits, tbf_args  # noqa: E402
from link import summary_train_s  # noqa: E402

from sedona_runtime.utils.errors import SedonaError  # noqa: E402

BENCH_CFG = {"arch": "resnet101", "width": 0.25, "image_size": 32, "batch_size": 32, "seed": 0}


def test_rates_are_tcs_spelling_and_bad_ones_are_one_line():
    assert rate_bits("10gbit") == 1e10 and rate_bits("200mbit") == 2e8 and rate_bits("1.5Gbit") == 1.5e9
    for bad in ("fast", "10gbps", "0mbit", "-1gbit"):
        with pytest.raises(SedonaError, match="write it as tc does"):
            rate_bits(bad)


def test_tbf_burst_is_a_hundredth_of_a_second_at_least_64k():
    assert tbf_args("slxa", "200mbit") == ["tc", "qdisc", "replace", "dev", "slxa", "root", "tbf", "rate", "200mbit",
                                           "burst", "250000", "latency", "50ms"]
    assert tbf_args("d", "10gbit")[10] == "12500000" and tbf_args("d", "10mbit")[10] == str(64 * 1024)


def test_the_namespaces_and_their_link_stay_private():
    pair = Pair("123")
    assert pair.ns == ("sedlink-123-a", "sedlink-123-b") and pair.addr == ("10.231.0.1", "10.231.0.2")
    cmds = [" ".join(c) for c in pair.setup_commands()]
    # both veth ends are created inside the namespaces: nothing in the host's namespace, no route out
    assert "ip link add sl123a netns sedlink-123-a type veth peer name sl123b netns sedlink-123-b" in cmds
    assert all("netns" in c or c.startswith("ip -n ") for c in cmds)
    assert [" ".join(c) for c in pair.teardown_commands()] == ["ip netns del sedlink-123-a",
                                                                "ip netns del sedlink-123-b"]
    rate = [" ".join(c) for c in pair.rate_commands("1gbit")]
    assert rate[0].startswith("ip netns exec sedlink-123-a tc qdisc replace dev sl123a root tbf rate 1gbit")
    assert rate[1].startswith("ip netns exec sedlink-123-b tc qdisc replace dev sl123b")
    assert pair.exec_prefix(1, "1") == ["ip", "netns", "exec", "sedlink-123-b", "taskset", "-c", "1"]
    assert all(len(d) <= 15 for d in Pair("99999").dev)


def test_node_commands():
    pair = Pair("7")
    assert Job(1, 2).procs() == (1, 1) and Job(2).procs() == (2, 1) and Job(2, 2).procs() == (3, 2)
    ddp = " ".join(ddp_command(pair, 1, Job(1, 2), 29500, "c.json", "o.json"))
    assert "--nnodes 2 --nproc-per-node 1 --node-rank 1 --master-addr 10.231.0.1 --master-port 29500" in ddp
    assert ddp.endswith("ddp_node.py c.json o.json")
    g = " ".join(greedy_command(pair, 0, Job(2), 29501, BENCH_CFG, "planned.json", 23, "/tmp/run"))
    assert "--nproc-per-node 2 --node-rank 0" in g and "launch/greedy.py --blocks 2 --decoupling planned.json" in g
    assert "--steps 23" in g and "--iface sl7a" in g and "--transport p2p" in g and "--replicas" not in g
    r = " ".join(greedy_command(pair, 1, Job(2, 2, "rows"), 1, BENCH_CFG, "p.json", 3, "/tmp/run"))
    assert "--blocks 2 --replicas 2 --replica-placement rows --decoupling p.json" in r and "--iface sl7b" in r
    env = node_env(pair, 1, {"PATH": "/bin"})
    assert env["GLOO_SOCKET_IFNAME"] == "sl7b" == env["TP_SOCKET_IFNAME"] and env["OMP_NUM_THREADS"] == "1"


def test_the_greedy_time_comes_from_the_runtimes_summary():
    assert summary_train_s({"train_time_s": 12.5, "wall_time_s": 30.0}) == 12.5
    for bad in ({}, {"train_time_s": 0}, {"train_time_s": "x"}):
        with pytest.raises(SedonaError, match="train_time_s"):
            summary_train_s(bad)
