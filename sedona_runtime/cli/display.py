"""Screen output of the training CLIs: plain lines or rich live views fed by the trainer, and the result."""
from __future__ import annotations

from typing import Callable

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


def format_progress(p: Progress) -> str:
    """One plain line: step, per-block losses, lr, throughput, ETA."""
    losses = " ".join(f"{v:.4f}" for v in p.losses)
    return (f"step {p.step}/{p.total}  loss [{losses}]  lr {p.lr:.3g}  "
            f"{p.samples_per_s:.0f} samples/s  eta {fmt_time(p.eta_s)}")


class PlainReporter(Reporter):
    """Periodic plain lines through `write` (for logs and pipes), at most every `every` steps."""

    def __init__(self, write: Callable[[str], None], every: int = 50) -> None:
        self.write = write
        self.every = max(1, every)
        self._last = -1

    def start(self, info: RunInfo) -> None:
        what = "resuming at step %d" % info.start_step if info.start_step else "training"
        self.write(f"{what}: {len(info.blocks)} block(s) on {info.device}, {info.total_steps} steps")
        for line in info.blocks + info.notes:
            self.write(f"  {line}")

    def step(self, progress: Progress) -> None:
        if self._last < 0 or progress.step - self._last >= self.every or progress.step == progress.total:
            self._last = progress.step
            self.write(format_progress(progress))

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.write(f"step {step}: val error {val_error:.2%} (best {best_error:.2%})")

    def stopping(self, step: int, signal_name: str) -> None:
        self.write(stopping_line(step, signal_name))


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

    def stopping(self, step: int, signal_name: str) -> None:
        self.console.print(stopping_line(step, signal_name), markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()


def print_summary(console: Console, summary: dict, out: str) -> None:
    """The result of a training run (single-process or pipelined): test errors, time, memory, where it is."""
    test = summary["test"]
    console.print(f"[bold]test accuracy {1 - test['top1_error']:.2%}[/bold]  (top-1 error {test['top1_error']:.2%}, "
                  f"top-5 error {test['top5_error']:.2%}, {test['samples']} images)")
    if test.get("ensemble_top1_error") is not None:
        console.print(f"aux ensemble: top-1 error {test['ensemble_top1_error']:.2%}, "
                      f"top-5 error {test['ensemble_top5_error']:.2%}")
    peaks = summary.get("peak_memory_bytes") or []
    if peaks:
        console.print(f"{memory_label(summary.get('peak_memory_kind', ''))} per block: "
                      + " / ".join(fmt_mib(b) for b in peaks), highlight=False)
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
