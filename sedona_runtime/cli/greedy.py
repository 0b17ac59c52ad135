"""`torchrun launch/greedy.py`: greedy block-wise training as a pipeline, one process per block."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# TensorPipe logs every closed connection as a C++ warning while a failed run tears down; the
# coordinator reports the cause in one line instead. Set before torch loads (children inherit it).
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sedona_runtime.cli._common import (MODEL_HELP, OneLineParser, run_main, run_name, take_model_option,
                                        threads_warning)
from sedona_runtime.cli.display import (MAX_SILENCE_S, SHORT_MEMORY_LABELS, TimedLines, checking_line, fmt_seconds,
                                        fmt_time, memory_label, print_summary, timestamp)
from sedona_runtime.cli.train import add_training_options, build_config as train_config
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.coordinator import PipelineReporter
from sedona_runtime.pipeline.torchrun_error import record_for_torchrun
from sedona_runtime.training.display import RunInfo
from sedona_runtime.utils.errors import SedonaError



def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="torchrun launch/greedy.py",
                     description="Train a network block by block with one process per block (pipelined over "
                                 "torch.distributed RPC). Run under torchrun with 1 process (it starts the K blocks "
                                 "itself) or K+1 (rank 0 coordinator, ranks 1..K the blocks; spans machines).")
    p.add_argument("--blocks", type=int, help="K: number of blocks/processes (= the decoupling's K); required "
                                              "unless --resume reads it from the run's config.json")
    p.add_argument("--replicas", type=int,
                   help="R: processes per block (default 1); each trains on 1/R of every batch and the R replicas "
                        "of a block average its gradients (c10d all-reduce) before each step: K*R processes. "
                        "--blocks 1 --replicas R is plain data-parallel backprop")
    p.add_argument("--replica-placement", choices=("rows", "blocks"),
                   help="which block processes get consecutive ranks (torchrun: the same machine): rows (default: "
                        "a replica row, activations stay local) or blocks (a block's replicas, all-reduces stay "
                        "local)")
    p.add_argument("--decoupling", help="a shipped name (resnet152_k4.json), a decoupling file, dgl:K, predsim:K or "
                                        "sedona:K; required unless --resume")
    p.add_argument("--arch", help="architecture (default: the decoupling's, else small)")
    p.add_argument("--model", help=MODEL_HELP + "; the block processes import it too")
    p.add_argument("--retarget", action="store_true", default=None,
                   help="map a decoupling made for another architecture onto --arch")
    add_training_options(p)
    p.add_argument("--dtype", choices=("float32", "float64"), help="training dtype (default float32)")
    p.add_argument("--seed", type=int, help="model init, data split and batch order (default 0)")
    p.add_argument("--out", help="run directory (default runs/<dataset>_<arch>_<decoupling>_pipeline)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run in --out")
    p.add_argument("--devices", help="auto (default: cuda:i per block when GPUs exist, else CPU core sets), "
                                     "cpu, cuda, or a comma list with one device per block (with --replicas: per block "
                                     "process, in rank order)")
    p.add_argument("--threads", type=int, help="torch threads per block (default 0: one per core of its set)")
    p.add_argument("--queue-depth", type=int, help="items a block's input queue holds (backpressure; default 2)")
    p.add_argument("--window", type=int, help="unacknowledged puts a sender may have in flight (default 2)")
    p.add_argument("--timeout", type=float, help="bound in seconds on any single wait (default 300)")
    p.add_argument("--port", type=int, default=0, help="loopback port when self-launching (0: a free one)")
    p.add_argument("--transport", choices=("rpc", "p2p"),
                   help="how activations travel between processes: rpc (default: RPC-backed queues) or p2p "
                        "(c10d send/recv: gloo, NCCL between two GPUs)")
    p.add_argument("--device-maps", action="store_true", default=None,
                   help="rpc transport: move CUDA activations GPU to GPU with TensorPipe device maps (default: "
                        "through pinned host memory)")
    p.add_argument("--iface", help="network interface a multi-machine (torchrun) run listens on; a run on one "
                                   "machine listens on loopback only")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return p


def _default_arch(decoupling: str) -> str:
    from sedona_runtime.decoupling import load_decoupling

    try:
        return load_decoupling(decoupling).arch
    except SedonaError:
        return "small"  # dgl:K and friends are built for the model, which defaults to small


def _kept_on_resume() -> tuple[str, ...]:
    """Pipeline settings a resumed run keeps from its config.json unless given again: the ones the resume rules
    let change (training.resume_rules: how the run is spread over processes, never what it computes;
    --replicas while the batch splits). Everything else is fixed by the saved config."""
    from sedona_runtime.training.resume_rules import free_keys

    return tuple(k for k in free_keys("pipeline", "pipeline") if k not in ("resume", "port"))


def build_config(args: argparse.Namespace, *, block: bool = False) -> PipelineConfig:
    """The run's PipelineConfig; a resumed run starts from the settings in its config.json.

    `block`: for a block process under torchrun, which reads no training option (it builds the coordinator's
    spec, shipped to it): only the process settings, which it checks against the coordinator's.
    """
    take_model_option(args)
    saved: dict = {}
    if args.resume:
        from sedona_runtime.training.run_dir import RunDir

        if args.out is None:
            raise SedonaError("--resume needs --out (the run directory to continue)")
        config = RunDir(args.out).read_config()
        if not isinstance(config.get("pipeline"), dict):
            raise SedonaError(f"cannot resume {args.out} with launch/greedy.py: it is a single-process run (its "
                              f"config.json has no pipeline settings); continue it with python -m "
                              f"sedona_runtime.train --resume --out {args.out}")
        saved = config["pipeline"]
        args.blocks = saved.get("blocks") if args.blocks is None else args.blocks
    else:
        missing = [o for o, v in (("--blocks", args.blocks), ("--decoupling", args.decoupling)) if v is None]
        if missing:
            raise SedonaError(f"{' and '.join(missing)} required (or --resume --out DIR to continue a run)")
        if args.arch is None and not block:  # a block reads no decoupling file: the coordinator's spec has it
            args.arch = _default_arch(args.decoupling)
        if args.out is None and not block:
            dec = Path(args.decoupling).name.replace(":", "").removesuffix(".json")
            args.out = str(Path("runs") / f"{run_name(args.dataset or 'digits')}_{run_name(args.arch)}_{dec}_pipeline")
    defaults = PipelineConfig()
    kept = {k: getattr(args, k) if getattr(args, k, None) is not None else saved.get(k, getattr(defaults, k))
            for k in _kept_on_resume()}
    if block:
        return PipelineConfig(blocks=args.blocks, resume=args.resume, port=args.port, **kept)
    args.device = None  # devices are per block here (--devices); the shared option mapping reads this one
    cfg = train_config(args)
    if args.dtype:
        cfg.dtype = args.dtype
    return PipelineConfig(train=cfg, blocks=args.blocks, resume=args.resume, port=args.port, **kept)


class PlainPipelineReporter(PipelineReporter):
    """Time-stamped lines (cli.display.TimedLines): progress with elapsed time and ETA, and each block's
    loss, rate, busy share and queue; at most one per `every` steps, at least one every 30 s."""

    def __init__(self, console: Console, every: int, max_gap_s: float = MAX_SILENCE_S,
                 clock=time.monotonic) -> None:
        self.console, self.clock = console, clock
        self.lines = TimedLines(self._print, every, max_gap_s, clock)
        self._t0, self._start_step, self._total = clock(), 0, 0
        self._done: tuple[int, int] = (0, 0)  # (steps every block finished, steps fed)

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def start(self, info: RunInfo) -> None:
        self._t0, self._start_step, self._total = self.clock(), info.start_step, info.total_steps
        self._done = (info.start_step, info.start_step)
        # With replicas the coordinator's description says how many processes: "2 blocks x 2 replicas (...)".
        what = info.device if " replicas " in info.device else f"{len(info.blocks)} block processes"
        self.lines.emit(f"pipeline: {what}, {info.total_steps} steps"
                        + (f" (resuming at {info.start_step})" if info.start_step else ""))
        for line in info.blocks + info.notes:
            self._print(f"  {line}")
        self.lines.start_heartbeat(lambda: self._progress(*self._done) + "  (running)")

    def _progress(self, done: int, fed: int) -> str:
        elapsed = self.clock() - self._t0
        rate = (done - self._start_step) / elapsed if elapsed > 0 else 0.0
        eta = fmt_time((self._total - done) / rate) if rate > 0 else "--:--"
        return (f"step {done}/{self._total} ({done / max(1, self._total):.0%}, fed {fed})  "
                f"elapsed {fmt_time(elapsed)}  eta {eta}")

    def blocks(self, fed: int, total: int, stats: dict[int, dict]) -> None:
        done = min((s["step"] for s in stats.values()), default=0)
        self._done, self._total = (done, fed), total
        if not self.lines.due(done, total):
            return
        parts = [f"b{i} loss {s['loss']:.3f} {s['samples_per_s']:.0f}/s busy {s['busy_frac']:.0%} q{s['queue_depth']}"
                 for i, s in sorted(stats.items())]
        self.lines.emit(self._progress(done, fed) + " | " + " | ".join(parts), done)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.lines.emit(f"step {step}: val error {val_error:.2%} (best {best_error:.2%})")

    def close(self) -> None:
        self.lines.stop()


    def note(self, line: str) -> None:
        self.lines.write(f"  {line}")

    def checking_images(self, done: int, total: int, elapsed_s: float) -> None:
        self.lines.write(f"{timestamp()} {checking_line(done, total, elapsed_s)}")


class RichPipelineReporter(PipelineReporter):
    """A live table that fits an 80-column terminal: per block its layers and head, step, loss,
    throughput, busy share, time waiting for input and for queue space, input queue depth, peak memory.

    The memory column says what each block measured (it reports its own `memory_kind`): peak RSS on
    CPU, peak CUDA allocation on GPU; with blocks on both, each cell says which it is.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = Live(console=console, refresh_per_second=4, transient=False)
        self.val = ""
        self.names: list[str] = []
        self.layers: list[tuple[str, str]] = []

    def start(self, info: RunInfo) -> None:
        self.names, self.layers = info.blocks, info.layers
        for line in info.notes:
            self.console.print(f"  {line}", markup=False, highlight=False)
        self.live.start()

    def _name(self, i: int) -> tuple[str, str, str]:
        """Block i's (number, layers, head) columns, from the RunInfo's data (its label when there is none)."""
        if i - 1 < len(self.layers):
            return (str(i), *self.layers[i - 1])
        return str(i), "", self.names[i - 1] if i - 1 < len(self.names) else f"block {i}"

    def blocks(self, fed: int, total: int, stats: dict[int, dict]) -> None:
        kinds = {s.get("memory_kind", "") for s in stats.values()}
        mixed = len(kinds) > 1
        mem_col = "peak\nmemory" if mixed or not kinds else memory_label(kinds.pop()).replace(" ", "\n", 1)
        t = Table(title=f"fed {fed}/{total}{self.val}", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)
        # Short headers and cells: the table fits 80 columns up to K = 99 and 6-digit step counts.
        for col in ("#", "layers", "head", "step", "loss", "img/s", "busy", "wait\nin", "wait\nout", "q", mem_col):
            t.add_column(col, justify="left" if col in ("layers", "head") else "right", no_wrap=True)
        for i, s in sorted(stats.items()):
            mib = s["peak_memory"] / 2**20
            mem = f"{mib:.0f}M" if mib < 10_000 else f"{mib / 1024:.1f}G"
            t.add_row(*self._name(i), str(s["step"]), f"{s['loss']:.3f}", f"{s['samples_per_s']:.0f}",
                      f"{s['busy_frac']:.0%}", fmt_seconds(s["total_wait_in_s"]), fmt_seconds(s["total_wait_out_s"]),
                      str(s["queue_depth"]),
                      mem + (f" {SHORT_MEMORY_LABELS.get(s.get('memory_kind', ''), '')}" if mixed else ""))
        self.live.update(t)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.val = f"  val error {val_error:.1%} at step {step} (best {best_error:.1%})"

    def note(self, line: str) -> None:
        self.console.print(f"  {line}", markup=False, highlight=False)

    def checking_images(self, done: int, total: int, elapsed_s: float) -> None:
        self.console.print(checking_line(done, total, elapsed_s), markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()


def run(argv: list[str] | None) -> int:
    from sedona_runtime.pipeline.launcher import run_pipeline

    args = _parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    pcfg = build_config(args, block=rank != 0)
    console = Console(soft_wrap=True)  # long paths stay on one line in logs
    if rank != 0:
        return int(run_pipeline(pcfg))
    # Said once, by the coordinator: threads per block above the cores (blocks sharing cores are placement's
    # own note).
    warning = threads_warning(pcfg.threads)
    if warning:
        print(warning, file=sys.stderr)
    reporter: PipelineReporter
    if console.is_terminal and not args.plain:
        reporter = RichPipelineReporter(console)
    else:
        reporter = PlainPipelineReporter(console, every=max(1, (pcfg.train.steps or 400) // 10))
    try:
        summary = run_pipeline(pcfg, reporter, overwrite=args.overwrite)
    finally:
        reporter.close()
    print_summary(console, summary, pcfg.train.out_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and a non-zero code otherwise."""
    return run_main(run, argv, "interrupted; continue with --resume (from the last committed checkpoint)",
                    on_error=record_for_torchrun)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
