"""`python -m sedona_runtime.plan --devices G`: ranked layouts with their commands, one-line errors."""
from __future__ import annotations

import json

import pytest

from sedona_runtime.cli.plan import main

SMALL = ["--arch", "small", "--dataset", "digits", "--device-rate", "1e9"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_ranked_layouts_with_commands(capsys, tmp_path):
    assert main(["--devices", "4", *SMALL, "--out", str(tmp_path / "layouts.json")]) == 0
    out = capsys.readouterr().out
    assert "DDP x 4" in out and "greedy 2 x 2" in out and "greedy 4 x 1" in out
    assert "launch/greedy.py --blocks 1 --replicas 4" in out
    rec = json.loads((tmp_path / "layouts.json").read_text())
    steps = [l["step_s"] for l in rec["layouts"]]
    assert steps == sorted(steps) and {(l["K"], l["R"]) for l in rec["layouts"]} >= {(1, 1), (1, 4), (2, 2), (4, 1)}
    assert all(l["K"] * l["R"] <= 4 for l in rec["layouts"])
    assert not any((tmp_path / f).exists() for f in ("planned_k2.json",))  # nothing written but --out
    # The pipelined peers beside them, at each K, marked as not run by this runtime (their model:
    # tests/planning/test_pipelined_backprop.py)
    piped = {(l["kind"], l["K"]) for l in rec["layouts"] if l["schedule"]}
    assert piped == {(s, K) for s in ("GPipe", "1F1B") for K in (2, 3, 4)}
    assert "peer, not run by this runtime" in out and "a peer this runtime does not run" in out


def test_overlap_hides_the_all_reduce_behind_the_compute(tmp_path):
    # Plain DDP on 2 hosts over a slow link: hiding part of the all-reduce behind the compute shortens its step.
    steps = {}
    for overlap in ("0", "0.67"):
        out = tmp_path / f"o{overlap}.json"
        assert main(["--devices", "2", *SMALL, "--link-gbps", "0.01", "--overlap", overlap, "--out", str(out)]) == 0
        rec = json.loads(out.read_text())
        steps[overlap] = next(l["step_s"] for l in rec["layouts"] if (l["K"], l["R"]) == (1, 2))
    assert steps["0.67"] < steps["0"]


def test_a_slow_link_and_memory_limits(capsys):
    assert main(["--devices", "2", *SMALL, "--link-gbps", "0.001", "--memory-gib", "64"]) == 0
    out = capsys.readouterr().out
    assert "2 hosts joined by 0.001 Gbit/s" in out and "yes" in out


@pytest.mark.parametrize("args, message", [
    (["--devices", "0"], "--devices must be a positive integer, got 0"),
    (["--devices", "2", "--link-gbps", "-1"], "--link-gbps must be a positive number"),
    (["--devices", "2", "--memory-gib", "0"], "--memory-gib must be a positive number"),
    (["--devices", "2", "--overlap", "1.5"], "--overlap must be a share of the compute between 0 and 1"),
    (["--devices", "2", "--hosts", "3", "--link-gbps", "1"], "--hosts must be an integer in 1..2"),
    (["--link-gbps", "1", "--decoupling", "dgl:2"], "--link-gbps: only with --devices G"),
    (["--devices", "2", "--arch", "small", "--dataset", "digits"], "--devices needs step times in seconds"),
    (["--devices", "2", "--device-rate", "1e9"], "--devices needs --arch"),
])
def test_bad_values_are_one_line(capsys, args, message):
    extra = [] if "--arch" in args or "--decoupling" in args or "needs --arch" in message else SMALL
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("error:")


def test_a_planned_layouts_command_writes_the_cut_it_ranked(capsys, tmp_path):
    """The printed `plan` command of a planned cut runs as printed (python ..., --arch for a spec, the same cost
    model) and writes the cut the table ranked (the fastest, not the top-scoring one: sedona:2 has alpha)."""
    import shlex

    assert main(["--devices", "2", "--arch", "vgg19", "--dataset", "cifar10", "--width", "0.25",
                 "--device-rate", "1e9", "--out", str(tmp_path / "layouts.json")]) == 0
    capsys.readouterr()
    rec = json.loads((tmp_path / "layouts.json").read_text())
    planned = next(l for l in rec["layouts"] if l["K"] == 2 and l["R"] == 1 and l["cut"] == "planned")
    plan_cmd, run_cmd = planned["command"].split(" && ")
    assert run_cmd.startswith("python launch/greedy.py --blocks 2 ")
    argv = shlex.split(plan_cmd)
    assert argv[:3] == ["python", "-m", "sedona_runtime.plan"] and "--arch" in argv and "--min-speedup" in argv
    assert main(argv[3:]) == 0
    written = json.loads((tmp_path / "planned_k2.json").read_text())
    assert [b["last"] for b in written["blocks"][:-1]] == planned["boundaries"] == [7]  # the fastest (1.864x)
    assert [b["head"] for b in written["blocks"][:-1]] == planned["heads"][:1]
