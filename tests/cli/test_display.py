"""Screen output of the training CLIs: plain lines, rich live views, the result with its memory label."""
from __future__ import annotations

import io
import re
import time

from rich.console import Console

from sedona_runtime.cli.display import PlainReporter, RichReporter, format_progress, print_summary
from sedona_runtime.training.display import Progress, RunInfo

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _progress(step: int) -> Progress:
    return Progress(step=step, total=100, losses=[1.25, 0.5], lr=0.05, samples_per_s=640.0, elapsed_s=10.0,
                    eta_s=75.0)


def test_plain_reporter_writes_every_n_steps_and_the_last():
    lines: list[str] = []
    rep = PlainReporter(lines.append, every=50, clock=FakeClock())
    rep.start(RunInfo(["block 1/2", "block 2/2"], 100, 0, "cpu"))
    for step in range(10, 101, 10):
        rep.step(_progress(step))
    rep.validated(100, 0.125, 0.1)
    rep.close()
    steps = [STAMP.sub("", line) for line in lines if STAMP.match(line) and "loss" in line]
    assert [s.split()[1] for s in steps] == ["10/100", "60/100", "100/100"]  # a time stamp starts every line
    assert "loss [1.2500 0.5000]" in steps[0] and "640 samples/s" in steps[0] and "eta 01:15" in steps[0]
    assert "elapsed 00:10" in steps[0] and "(10%)" in steps[0]
    assert STAMP.sub("", lines[-1]) == "step 100: val error 12.50% (best 10.00%)"


def test_plain_reporter_writes_at_least_every_30_seconds():
    """Slow steps (30 s between reports) get a line each although `every` asks for one per 1000 steps."""
    lines: list[str] = []
    clock = FakeClock()
    rep = PlainReporter(lines.append, every=1000, clock=clock)
    rep.start(RunInfo(["block 1/1"], 10_000, 0, "cpu"))
    for step in (10, 20, 30, 40):
        clock.now += 15.0
        rep.step(_progress(step))
    rep.close()
    shown = [STAMP.sub("", l).split()[1] for l in lines if "loss" in l]
    assert shown == ["10/100", "30/100"]  # the first, then 30 s later; 40 is only 15 s after 30


def test_plain_reporter_heartbeat_covers_a_long_step():
    """No report for longer than the gap: a heartbeat line still says where the run is, with its ETA."""
    lines: list[str] = []
    rep = PlainReporter(lines.append, every=1, max_gap_s=0.2)
    rep.start(RunInfo(["block 1/1"], 100, 0, "cpu"))
    rep.step(_progress(10))
    deadline = time.monotonic() + 10.0
    while not any("running" in l for l in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    rep.close()
    beat = next(l for l in lines if "running" in l)
    assert STAMP.match(beat) and "step 10/100" in beat and "eta" in beat and "elapsed" in beat
    count = len(lines)
    time.sleep(0.4)
    assert len(lines) == count  # close() stopped the heartbeat


def test_rich_reporter_renders_to_the_given_console():
    buf = io.StringIO()
    rep = RichReporter(Console(file=buf, force_terminal=True, width=160))
    rep.start(RunInfo(["block 1/2 (layers 1-3, aux1)"], 100, 0, "cpu"))
    rep.step(_progress(40))
    rep.validated(40, 0.2, 0.2)
    rep.step(_progress(50))
    rep.close()
    out = buf.getvalue()
    assert "block 1/2 (layers 1-3, aux1)" in out and "b1=1.250" in out and "val 20.0%" in out


def test_format_progress_hours():
    p = _progress(1)
    p.eta_s = 3 * 3600 + 62
    assert format_progress(p).endswith("eta 3:01:02")


def _summary(kind: str) -> dict:
    test = {"top1_error": 0.25, "top5_error": 0.05, "samples": 100, "ensemble_top1_error": None}
    return {"test": test, "peak_memory_bytes": [100 * 2**20, 300 * 2**20], "peak_memory_kind": kind,
            "best_val_error": None, "wall_time_s": 1.0, "samples_per_s": 10.0}


def test_summary_names_what_the_peak_memory_is():
    for kind, label in (("process_rss", "peak RSS per block: 100 MiB / 300 MiB"),
                        ("cuda_max_allocated", "peak CUDA alloc per block: 100 MiB / 300 MiB")):
        buf = io.StringIO()
        print_summary(Console(file=buf, width=200), _summary(kind), "runs/x")
        assert label in buf.getvalue() and "test accuracy 75.00%" in buf.getvalue()
    # The single-process trainer's blocks share one process: its RSS is said once, not once per block.
    buf = io.StringIO()
    print_summary(Console(file=buf, width=200), {**_summary("process_rss"), "processes": 1}, "runs/x")
    assert "peak RSS of the process (all 2 blocks): 300 MiB" in buf.getvalue() and "per block" not in buf.getvalue()


def test_pipeline_table_labels_its_memory_column():
    from sedona_runtime.cli.greedy import RichPipelineReporter

    stats = {i: {"step": 5, "loss": 1.0, "samples_per_s": 50.0, "busy_frac": 0.5, "total_wait_in_s": 0.1,
                 "total_wait_out_s": 0.2, "queue_depth": 1, "peak_memory": 64 * 2**20} for i in (1, 2)}
    for kinds, words in ((["process_rss"] * 2, ["peak", "RSS", "64M"]),
                         (["cuda_max_allocated"] * 2, ["peak", "CUDA alloc"]),
                         (["cuda_max_allocated", "process_rss"], ["peak", "memory", "64M CUDA", "64M RSS"])):
        buf = io.StringIO()
        rep = RichPipelineReporter(Console(file=buf, force_terminal=True, width=200))
        rep.start(RunInfo(["block 1/2", "block 2/2"], 10, 0, "2 processes"))
        rep.blocks(10, 10, {i: dict(s, memory_kind=kinds[i - 1]) for i, s in stats.items()})  # as blocks report it
        rep.close()
        assert all(w in buf.getvalue() for w in words), buf.getvalue()


def test_pipeline_table_fits_80_columns():
    """The live table of a 4-block ResNet-152 run with large counters fits an 80-column terminal, one row per block."""
    from sedona_runtime.cli.greedy import RichPipelineReporter

    spans = [(1, 12, "aux2"), (13, 25, "mlp_sr"), (26, 40, "predsim"), (41, 50, "classifier")]
    names = [f"block {i}/4 (layers {a}-{b}, {h})" for i, (a, b, h) in enumerate(spans, start=1)]
    layers = [(f"{a}-{b}", h) for a, b, h in spans]  # as data: the table never parses the labels
    for kinds in (["process_rss"] * 4, ["process_rss", "cuda_max_allocated"] * 2):
        stats = {i: {"step": 640000, "loss": 12.3456, "samples_per_s": 12345.0, "busy_frac": 1.0,
                     "total_wait_in_s": 99999.0, "total_wait_out_s": 1234.5, "queue_depth": 2,
                     "peak_memory": 123456 * 2**20, "memory_kind": kinds[i - 1]} for i in (1, 2, 3, 4)}
        buf = io.StringIO()
        rep = RichPipelineReporter(Console(file=buf, force_terminal=False, width=80))
        rep.start(RunInfo(names, 640000, 0, "4 processes", layers=layers))
        rep.validated(630000, 0.123, 0.111)
        rep.blocks(640000, 640000, stats)
        rep.close()
        rows = buf.getvalue().splitlines()
        assert max(len(r.rstrip()) for r in rows) <= 80, buf.getvalue()
        assert "…" not in buf.getvalue(), buf.getvalue()  # nothing cut off
        assert [r.split()[:3] for r in rows if r.split()[:1] in (["1"], ["2"], ["3"], ["4"])] == \
            [["1", "1-12", "aux2"], ["2", "13-25", "mlp_sr"], ["3", "26-40", "predsim"], ["4", "41-50", "classifier"]]


def test_summary_prints_the_per_block_table():
    summary = dict(_summary("process_rss"), decoupling=[{"first": 1, "last": 3, "head": "aux1"},
                                                       {"first": 4, "last": 6, "head": None}])
    summary["test"] = dict(summary["test"], ensemble_top1_error=0.2, ensemble_top5_error=0.04,
                           block_top1_error=[0.5, 0.25], block_top5_error=[0.1, 0.05])
    summary["val"] = dict(summary["test"], block_top1_error=[0.375, 0.125])
    buf = io.StringIO()
    print_summary(Console(file=buf, width=200), summary, "runs/x")
    rows = {r.split()[0]: r.split() for r in buf.getvalue().splitlines() if r.split()[:1] in (["1/2"], ["2/2"])}
    assert rows["1/2"] == ["1/2", "1-3", "aux1", "50.00%", "10.00%", "37.50%", "10.00%"]
    assert rows["2/2"] == ["2/2", "4-6", "classifier", "25.00%", "5.00%", "12.50%", "5.00%"]
    assert "ensemble 1+2" in buf.getvalue() and "20.00%" in buf.getvalue()


def test_pipeline_plain_lines_carry_time_elapsed_and_eta():
    from sedona_runtime.cli.greedy import PlainPipelineReporter

    clock = FakeClock()
    buf = io.StringIO()
    rep = PlainPipelineReporter(Console(file=buf, width=300), every=1000, clock=clock)
    rep.start(RunInfo(["block 1/2", "block 2/2"], 400, 0, "2 processes"))
    stats = {i: {"step": 0, "loss": 1.0, "samples_per_s": 50.0, "busy_frac": 0.5, "queue_depth": 1} for i in (1, 2)}
    for step in (10, 20, 100):
        clock.now += 40.0 if step == 100 else 5.0  # the third report comes 40 s later: due by time
        rep.blocks(step + 2, 400, {i: dict(s, step=step) for i, s in stats.items()})
    rep.close()
    lines = [l for l in buf.getvalue().splitlines() if "b1 loss" in l]
    assert len(lines) == 2 and all(STAMP.match(l) for l in lines)
    # 100 steps in 50 s: 300 left take 150 s.
    assert "step 100/400 (25%, fed 102)  elapsed 00:50  eta 02:30" in lines[1]
