"""Screen output of the training CLIs: plain lines or rich live views fed by the trainer, and the result."""
from __future__ import annotations

import threading
import time
from typing import Callable

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from sedona_runtime.training.display import Progress, Reporter, RunInfo

# summary["peak_memory_kind"] -> what the number is: on CPU a block's peak is its process's RSS (model,
# optimizer, activations and the interpreter), on GPU torch's peak allocation on the block's device.
MEMORY_LABELS = {"process_rss": "peak RSS", "cuda_max_allocated": "peak CUDA alloc"}
SHORT_MEMORY_LABELS = {"process_rss": "RSS", "cuda_max_allocated": "CUDA"}  # per cell, when blocks mix kinds


def memory_label(kind: str) -> str:
    """Screen label of a peak-memory kind ('process_rss' or 'cuda_max_allocated')."""
    return MEMORY_LABELS.get(kind, "peak memory")


def fmt_time(seconds: float) -> str:
    """mm:ss, or h:mm:ss from an hour on."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fmt_mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def stopping_line(step: int, signal_name: str) -> str:
    """What the screen says at once when a stop signal comes (the trainer stops at the next step boundary)."""
    what = "Ctrl-C" if signal_name == "SIGINT" else signal_name
    return (f"{what}: stopping after step {step} and saving a checkpoint there "
            f"(a second {what} stops at once, without saving)")
def checking_line(done: int, total: int, elapsed_s: float) -> str:
    """Progress of the image check before training: 'checking image files: 12,288/100,000 (12%), 4 s'."""
    return f"checking image files: {done:,}/{total:,} ({done / max(1, total):.0%}), {fmt_time(elapsed_s)}"


def fmt_seconds(seconds: float) -> str:
    """A duration in at most 6 characters: 9.9s, 123s, 2.8h."""
    if seconds < 100:
        return f"{seconds:.1f}s"
    return f"{seconds:.0f}s" if seconds < 10_000 else f"{seconds / 3600:.1f}h"


def timestamp(wall: float | None = None) -> str:
    """Local time as 'YYYY-MM-DD HH:MM:SS' (the prefix of every plain progress line)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if wall is None else wall))


def format_progress(p: Progress) -> str:
    """One plain line: step, per-block losses, lr, throughput, elapsed time, ETA."""
    losses = " ".join(f"{v:.4f}" for v in p.losses)
    return (f"step {p.step}/{p.total} ({p.step / max(1, p.total):.0%})  loss [{losses}]  lr {p.lr:.3g}  "
            f"{p.samples_per_s:.0f} samples/s  elapsed {fmt_time(p.elapsed_s)}  eta {fmt_time(p.eta_s)}")


# A batch scheduler's log must show the run is alive: a plain line at least this often, whatever the step count.
MAX_SILENCE_S = 30.0


class TimedLines:
    """Time-stamped plain lines for logs and pipes: at most one per `every` steps, but at least one every
    `max_gap_s` seconds; a heartbeat thread writes `status()` when no line came for that long (a step or
    an evaluation longer than the gap). Thread-safe."""

    def __init__(self, write: Callable[[str], None], every: int, max_gap_s: float = MAX_SILENCE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.every, self.max_gap_s, self.clock = write, max(1, every), max_gap_s, clock
        self.last_step = -1
        self.last_time = clock()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, step: int, total: int) -> bool:
        """True when a line for `step` should be written now."""
        return (self.last_step < 0 or step - self.last_step >= self.every or step == total
                or self.clock() - self.last_time >= self.max_gap_s)

    def emit(self, line: str, step: int | None = None) -> None:
        """Write `line` with the time in front (and remember `step` as the last one shown)."""
        with self.lock:
            self.write(f"{timestamp()} {line}")
            self.last_time = self.clock()
            if step is not None:
                self.last_step = step

    def start_heartbeat(self, status: Callable[[], str]) -> None:
        """Write `status()` whenever `max_gap_s` passes without a line, until `stop`."""
        def run() -> None:
            while not self._stop.wait(max(0.05, min(1.0, self.max_gap_s / 4))):
                if self.clock() - self.last_time >= self.max_gap_s:
                    self.emit(status())

        self._thread = threading.Thread(target=run, name="progress-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


class PlainReporter(Reporter):
    """Periodic time-stamped plain lines through `write` (for logs and pipes): at most every `every` steps,
    at least every `max_gap_s` seconds (with the elapsed time and an ETA even while a step runs)."""

    def __init__(self, write: Callable[[str], None], every: int = 50, max_gap_s: float = MAX_SILENCE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lines = TimedLines(write, every, max_gap_s, clock)
        self.clock = clock
        self._last: tuple[Progress, float] | None = None
        self._total = 0
        self._t0 = clock()

    def start(self, info: RunInfo) -> None:
        what = "resuming at step %d" % info.start_step if info.start_step else "training"
        self._total, self._t0 = info.total_steps, self.clock()
        self.lines.emit(f"{what}: {len(info.blocks)} block(s) on {info.device}, {info.total_steps} steps")
        for line in info.blocks + info.notes:
            self.lines.write(f"  {line}")
        self.lines.start_heartbeat(self._status)

    def _status(self) -> str:
        if self._last is None:
            return f"step 0/{self._total}  starting (elapsed {fmt_time(self.clock() - self._t0)})"
        p, at = self._last
        since = self.clock() - at
        return (f"step {p.step}/{p.total} ({p.step / max(1, p.total):.0%})  running (no step report for "
                f"{since:.0f} s)  elapsed {fmt_time(p.elapsed_s + since)}  eta {fmt_time(max(0.0, p.eta_s - since))}")

    def step(self, progress: Progress) -> None:
        self._last = (progress, self.clock())
        if self.lines.due(progress.step, progress.total):
            self.lines.emit(format_progress(progress), progress.step)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.lines.emit(f"step {step}: val error {val_error:.2%} (best {best_error:.2%})")

    def close(self) -> None:
        self.lines.stop()

    def checking_images(self, done: int, total: int, elapsed_s: float) -> None:
        self.lines.write(f"{timestamp()} {checking_line(done, total, elapsed_s)}")

    def stopping(self, step: int, signal_name: str) -> None:
        # Called from a signal handler: write directly, never through emit's lock (the interrupted main
        # thread may hold it).
        self.lines.write(f"{timestamp()} {stopping_line(step, signal_name)}")


class RichReporter(Reporter):
    """A rich live view: a progress bar with ETA and the per-block losses and throughput.

    The console is the caller's (the CLI owns the screen); this class only renders to it.
    """

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console
        self.bar = Bar(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                       TextColumn("{task.fields[info]}"), console=console, transient=False)
        self.task = None
        self.blocks: list[str] = []
        self.val = ""

    def start(self, info: RunInfo) -> None:
        self.blocks = info.blocks
        for line in info.blocks + info.notes:
            self.console.print(f"  {line}", markup=False, highlight=False)
        self.task = self.bar.add_task("train", total=info.total_steps, completed=info.start_step, info="")
        self.bar.start()

    def step(self, progress: Progress) -> None:
        losses = " ".join(f"b{i + 1}={v:.3f}" for i, v in enumerate(progress.losses))
        info = f"{losses}  {progress.samples_per_s:.0f}/s  lr {progress.lr:.2g}{self.val}"
        self.bar.update(self.task, completed=progress.step, info=info)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.val = f"  val {val_error:.1%} (best {best_error:.1%})"

    def checking_images(self, done: int, total: int, elapsed_s: float) -> None:
        self.console.print(checking_line(done, total, elapsed_s), markup=False, highlight=False)

    def stopping(self, step: int, signal_name: str) -> None:
        self.console.print(stopping_line(step, signal_name), markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()


def block_table(blocks: list[dict], results: dict[str, dict]) -> Table:
    """Per-block top-1/top-5 errors (DGL's per-layer table): one row per block's own head, then the
    auxiliary ensemble. `blocks`: the decoupling's [{"first", "last", "head"}]; `results`: split label ->
    EvalResult as a dict (with block_top1_error/block_top5_error)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="errors per block (each block's own head)",
                  title_justify="left")
    table.add_column("block", justify="right")
    table.add_column("layers", justify="right")
    table.add_column("head")
    for split in results:
        table.add_column(f"{split} top-1", justify="right")
        table.add_column(f"{split} top-5", justify="right")

    def cells(values: list[float | None]) -> list[str]:
        return ["-" if v is None else f"{v:.2%}" for v in values]

    k = len(blocks)
    for i, b in enumerate(blocks):
        errs: list[float | None] = []
        for res in results.values():
            t1, t5 = res.get("block_top1_error") or [], res.get("block_top5_error") or []
            errs += [t1[i] if i < len(t1) else None, t5[i] if i < len(t5) else None]
        table.add_row(f"{i + 1}/{k}", f"{b['first']}-{b['last']}", b.get("head") or "classifier", *cells(errs))
    if k > 1:
        errs = []
        for res in results.values():
            errs += [res.get("ensemble_top1_error"), res.get("ensemble_top5_error")]
        table.add_row("", "", f"ensemble {k - 1}+{k}", *cells(errs))
    return table


def print_summary(console: Console, summary: dict, out: str) -> None:
    """The result of a training run (single-process or pipelined): test errors, the per-block table, time,
    memory, where it is."""
    test = summary["test"]
    console.print(f"[bold]test accuracy {1 - test['top1_error']:.2%}[/bold]  (top-1 error {test['top1_error']:.2%}, "
                  f"top-5 error {test['top5_error']:.2%}, {test['samples']} images)")
    blocks = summary.get("decoupling") or []
    if blocks and test.get("block_top1_error"):
        results = {"test": test}
        if summary.get("val"):
            results["val"] = summary["val"]
        print_unwrapped(console, block_table(blocks, results))
    if test.get("ensemble_top1_error") is not None:
        console.print(f"aux ensemble: top-1 error {test['ensemble_top1_error']:.2%}, "
                      f"top-5 error {test['ensemble_top5_error']:.2%}")
    peaks = summary.get("peak_memory_bytes") or []
    if peaks:
        reserved = summary.get("peak_reserved_bytes") or []
        held = (f" (CUDA cache reserved: {' / '.join(fmt_mib(b) for b in reserved)})"
                if any(reserved) else "")  # what the caching allocator holds beside what tensors use
        kind = summary.get("peak_memory_kind", "")
        if kind == "process_rss" and summary.get("processes") == 1:  # one process holds every block
            console.print(f"{memory_label(kind)} of the process (all {len(peaks)} blocks): {fmt_mib(max(peaks))}",
                          highlight=False)
        else:
            console.print(f"{memory_label(kind)} per block: " + " / ".join(fmt_mib(b) for b in peaks) + held,
                          highlight=False)
    best = summary.get("best_val_error")
    best_txt = f"best val error {best:.2%} (step {summary['best_val_step']}), " if best is not None else ""
    console.print(f"{best_txt}wall time {summary['wall_time_s']:.1f} s, {summary['samples_per_s']:.0f} samples/s; "
                  f"run directory {escape(out)}")


def print_unwrapped(console: Console, table: Table) -> None:
    """Print `table` with every row on one line, widening a narrower console to fit it."""
    # A console narrower than the table would wrap cells onto extra lines; widen it so every row stays one
    # line for whoever parses the output (a terminal may still fold long rows on screen).
    natural = Measurement.get(console, console.options.update_width(100_000), table).maximum
    if natural > console.width:
        console.width = natural
    console.print(table)
