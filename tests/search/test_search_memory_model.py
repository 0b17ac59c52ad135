"""The outer step's predicted peak (search/memory_model.py), the recompute decision and the refusal at start."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_tiny import tiny_relaxed
from sedona_runtime.search import memory_model as mm
from sedona_runtime.search.memory_model import (LiveBytes, PeakEstimate, plan_memory, step_bytes, step_bytes_bound,
                                               traced_step_bytes)
from sedona_runtime.utils.errors import SedonaError

GIB = 2**30


def test_live_bytes_counts_storages_while_they_live() -> None:
    x = torch.randn(1000, 1000, dtype=torch.float64, requires_grad=True)  # made before: not counted
    with LiveBytes() as live:
        y = (x * 2).sin()  # x * 2 is saved for sin's backward; y is the result: 2 x 8 MB
        assert live.now == 2 * 8_000_000
        z = y.view(-1)[:10]  # a view: no new storage
        s = y.sum()  # 8 bytes; keeps the graph (and x * 2 in it) alive
        assert live.now == 2 * 8_000_000 + 8
        del y, z
        assert live.now == 8_000_000 + 8  # x * 2 lives on in the graph
        (g,) = torch.autograd.grad(s, x)  # frees the graph; g is 8 MB
        del s
        assert live.now == 8_000_000
        del g
    assert live.now == 0 and live.peak >= 2 * 8_000_000


def test_the_extrapolated_peak_equals_a_trace_at_the_target() -> None:
    # step_bytes traces at batches 4, 8 and T = 1, 2 and extrapolates (a + bB + cT + dBT); here against a
    # trace at batch 24, T = 4. The terms are exact for the stored graph (what each step and image keeps);
    # observed agreement 1%, the bound 5%. Recomputation holds about one step's graph, the stored path T.
    net = tiny_relaxed(num_layers=4, pool=2, bn=True, seed=1)
    for recompute in (False, True):
        want = traced_step_bytes(net, (4,), 24, 48, 4, recompute=recompute)
        got = step_bytes(net, (4,), 24, 48, 4, recompute=recompute)
        assert got == pytest.approx(want, rel=0.05), (recompute, got, want)
    stored, rec = step_bytes(net, (4,), 512, 512, 5, recompute=False), step_bytes(net, (4,), 512, 512, 5, recompute=True)
    assert rec < 0.5 * stored
    for b, t in ((4, 1), (24, 4), (512, 5)):  # the one-trace bound is above the extrapolation
        for recompute in (False, True):
            bound = step_bytes_bound(net, (4,), b, 2 * b, t, recompute=recompute)
            assert bound >= step_bytes(net, (4,), b, 2 * b, t, recompute=recompute)


def test_the_recomputed_sweep_holds_one_shard_at_a_time() -> None:
    # --shards 4 --recompute at batch 32 holds about what the unsharded sweep holds at batch 8 (measured +8% on
    # this tiny net: the whole batch's inputs and the shards' weights, a few kB here, nothing at real sizes),
    # and much less than the unsharded sweep at 32; the stored graph of 4 shards holds every shard (+4%).
    net = tiny_relaxed(num_layers=4, pool=2, bn=True, seed=1)
    one = traced_step_bytes(net, (4,), 8, 16, 3, recompute=True)
    four = traced_step_bytes(net, (4,), 32, 64, 3, recompute=True, shards=4)
    whole = traced_step_bytes(net, (4,), 32, 64, 3, recompute=True)
    assert one <= four <= 1.15 * one and four < 0.7 * whole, (one, four, whole)
    stored = traced_step_bytes(net, (4,), 32, 64, 3, recompute=False)
    assert traced_step_bytes(net, (4,), 32, 64, 3, recompute=False, shards=4) == pytest.approx(stored, rel=0.1)


def _predict(stored: float, recomputed: float, calls: list):
    def predict(recompute: bool) -> PeakEstimate:
        calls.append(recompute)
        return PeakEstimate(step=int((recomputed if recompute else stored) * GIB), resident=0)
    return predict


def test_plan_keeps_the_stored_graph_where_it_fits_and_recomputes_where_it_does_not() -> None:
    calls: list = []
    plan = plan_memory(None, 24 * GIB, _predict(20, 6, calls))
    assert not plan.recompute and calls == [False] and "stored graph" in plan.note
    plan = plan_memory(None, 16 * GIB, _predict(20, 6, calls))
    assert plan.recompute and "20.0 GiB" in plan.note and "--recompute" in plan.note and "6.0 GiB" in plan.note
    calls.clear()
    assert plan_memory(True, 16 * GIB, _predict(20, 6, calls)).recompute and calls == [True]  # asked: no stored trace
    calls.clear()  # where the cheap bound fits, nothing else is predicted
    plan = plan_memory(None, 24 * GIB, _predict(20, 6, calls), bound=lambda recompute: PeakEstimate(22 * GIB, 0))
    assert not plan.recompute and calls == [] and "at most 22.0 GiB" in plan.note
    plan = plan_memory(None, 16 * GIB, _predict(20, 6, calls), bound=lambda recompute: PeakEstimate(22 * GIB, 0))
    assert plan.recompute and calls == [False, True]


@pytest.mark.parametrize("requested,capacity,words", [
    (False, 16, ["20.0 GiB", "16.0 GiB", "--recompute", "--batch-size"]),  # the stored graph was insisted on
    (None, 4, ["6.0 GiB", "even with --recompute", "--batch-size", "--devices"]),
    (True, 4, ["6.0 GiB", "--batch-size", "--devices"]),
])
def test_plan_refuses_in_one_line_naming_the_setting(requested, capacity, words) -> None:
    with pytest.raises(SedonaError) as err:
        plan_memory(requested, capacity * GIB, _predict(20, 6, []))
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def _capacity(monkeypatch, value: int) -> None:
    monkeypatch.setattr(mm, "device_memory", lambda device: value)


def _fake_traces(monkeypatch) -> None:
    """Traces replaced by a formula (the real ones are tested above; these tests check the runner's use of
    them): the stored step 2 MiB per image and step, the recomputed one 2 MiB per image, RSS fixed."""
    def trace(net, shape, batch, val_batch, steps, recompute, fast):
        return 2**21 * batch * (1 if recompute else steps)

    monkeypatch.setattr(mm, "_cached_trace", trace)
    monkeypatch.setattr(mm, "_process_rss", lambda: 2**28)


def test_a_search_that_cannot_fit_is_refused_before_its_directory_exists(tmp_path: Path, monkeypatch) -> None:
    from test_search_runner import tiny_config
    from sedona_runtime.search.runner import SearchRunner

    _fake_traces(monkeypatch)
    _capacity(monkeypatch, 2**20)  # 1 MiB: not even the process fits
    with pytest.raises(SedonaError, match="even with --recompute.*--batch-size"):
        SearchRunner(tiny_config(search_steps=1, val_batch_size=64), tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_recompute_is_switched_on_where_only_it_fits_and_the_start_says_so(tmp_path: Path, monkeypatch) -> None:
    from test_search_runner import tiny_config
    from sedona_runtime.search.runner import SearchRunner

    _fake_traces(monkeypatch)
    _capacity(monkeypatch, 1 << 50)
    probe = SearchRunner(tiny_config(search_steps=1, val_batch_size=64), tmp_path / "probe")
    assert not probe.bilevel.recompute and "at most" in probe.memory_plan.note  # the bound sufficed
    args = (probe.net, probe.device, probe.data.input_shape, 8, 64, 2, 3)
    stored, rec = (mm.predict_peak(*args, recompute=r).total for r in (False, True))
    assert rec < stored
    events: list = []

    class Rec:
        def event(self, r: dict) -> None:
            events.append(r)

    _capacity(monkeypatch, (stored + rec) // 2)
    runner = SearchRunner(tiny_config(search_steps=1, val_batch_size=64), tmp_path / "auto", reporter=Rec())
    assert runner.bilevel.recompute
    assert runner.run() is not None and runner.run_dir.read_config()["recompute"] is None  # decided again on resume
    start = next(r for r in events if r["kind"] == "start")
    assert "recomputing each inner step" in start["memory"] and "--recompute" in start["memory"]
    with pytest.raises(SedonaError, match="pass --recompute"):
        SearchRunner(tiny_config(search_steps=1, val_batch_size=64, recompute=False), tmp_path / "no")


@pytest.mark.parametrize("flag,words", [("--no-recompute", ["pass --recompute"]),
                                        ("--recompute", ["even with --recompute", "--batch-size", "--devices"])])
def test_the_cli_refuses_in_one_line_and_writes_nothing(tmp_path: Path, monkeypatch, capsys, flag, words) -> None:
    from test_search_cli import TINY, _fails

    # The wiring only (the numbers are tested above): every trace is 1 GiB, the device has 512 MiB.
    monkeypatch.setattr(mm, "_cached_trace", lambda *a: GIB)
    _capacity(monkeypatch, GIB // 2)
    _fails(capsys, TINY + [flag, "--out", str(tmp_path / "s")], "error: memory:", *words)
    assert not (tmp_path / "s").exists()


def test_the_plan_counts_one_shard_and_the_refusal_names_the_shards_that_fit(monkeypatch) -> None:
    # Fake traces (2 MiB per image of the step, recomputed): at batch 64 the recomputed step is 141 MiB with
    # the CPU factor, per shard of 16 rows 35 MiB; the device holds the process and 50 MiB more.
    _fake_traces(monkeypatch)
    net = tiny_relaxed(num_layers=3, pool=2, bn=True, seed=1)
    resident = mm.predict_peak(net, torch.device("cpu"), (4,), 64, 64, 2, 3, recompute=True).resident
    cap = resident + 50 * 2**20
    args = (net, torch.device("cpu"), (4,), 64, 64, 2, 3)
    with pytest.raises(SedonaError) as err:
        mm.plan_search_memory(*args, requested=None, capacity=cap)
    msg = str(err.value)
    assert "--shards 4 --recompute would peak at" in msg and "--batch-size" in msg and "--devices" in msg, msg
    plan = mm.plan_search_memory(*args, requested=None, capacity=cap, shards=4)
    assert plan.recompute and "one shard of 16 rows at a time" in plan.note, plan.note
    assert plan.recomputed.step == int(2**21 * 16 * mm.CPU_OVERHEAD)
    with pytest.raises(SedonaError, match="with --recompute.*: 4 devices \\(--devices\\) would peak"):
        mm.plan_search_memory(*args, requested=True, capacity=cap, shards=2, processes=True)
    with pytest.raises(SedonaError) as err:  # nothing fits: no shard count is named
        mm.plan_search_memory(*args, requested=True, capacity=resident)
    assert "--shards" not in str(err.value)
