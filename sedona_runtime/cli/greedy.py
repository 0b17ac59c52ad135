"""`torchrun launch/greedy.py`: greedy block-wise training as a pipeline, one process per block."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# TensorPipe logs every closed connection as a C++ warning while a failed run tears down; the
# coordinator reports the cause in one line instead. Set before torch loads (children inherit it).
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sedona_runtime.cli._common import OneLineParser, run_main
from sedona_runtime.cli.display import SHORT_MEMORY_LABELS, fmt_mib, memory_label, print_summary
from sedona_runtime.cli.train import add_training_options, build_config as train_config
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.coordinator import PipelineReporter
from sedona_runtime.training.display import RunInfo
from sedona_runtime.utils.errors import SedonaError

# Defaults that make the README's main job (ResNet-152, K = 4, embedded digits) finish in a few
# minutes on a 2-core machine; every one can be overridden.
DEMO_WIDTH = 0.25
DEMO_IMAGE_SIZE = 8  # the digits are 8x8: no upscaling


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="torchrun launch/greedy.py",
                     description="Train a network block by block with one process per block (pipelined over "
                                 "torch.distributed RPC). Run under torchrun with 1 process (it starts the K blocks "
                                 "itself) or K+1 (rank 0 coordinator, ranks 1..K the blocks; spans machines).")
    p.add_argument("--blocks", type=int, help="K: number of blocks/processes (= the decoupling's K); required "
                                              "unless --resume reads it from the run's config.json")
    p.add_argument("--decoupling", help="a shipped name (resnet152_k4.json), a decoupling file, dgl:K, predsim:K or "
                                        "sedona:K; required unless --resume")
    p.add_argument("--arch", help="architecture (default: the decoupling's, else small)")
    p.add_argument("--retarget", action="store_true", default=None,
                   help="map a decoupling made for another architecture onto --arch")
    add_training_options(p, image_size=f"input resolution (default {DEMO_IMAGE_SIZE} on digits, 64 on imagefolder, else 32)",
                         width=f"channel width multiplier (default {DEMO_WIDTH} on digits, else 1)")
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run directory (default runs/<dataset>_<arch>_<decoupling>_pipeline)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or stopped run in --out")
    p.add_argument("--devices", help="auto (default: cuda:i per block when GPUs exist, else CPU core sets), "
                                     "cpu, cuda, or a comma list with one device per block")
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


# Pipeline settings a resumed run keeps from its config.json unless given again (they change how the
# run is spread over processes, never what it computes). Everything else is fixed by the saved config.
_KEPT_ON_RESUME = ("devices", "threads", "queue_depth", "window", "timeout", "transport", "device_maps", "iface")


def build_config(args: argparse.Namespace) -> PipelineConfig:
    """The run's PipelineConfig; a resumed run starts from the settings in its config.json."""
    saved: dict = {}
    if args.resume:
        from sedona_runtime.training.run_dir import RunDir

        if args.out is None:
            raise SedonaError("--resume needs --out (the run directory to continue)")
        saved = RunDir(args.out).read_config().get("pipeline", {})
        args.blocks = saved.get("blocks") if args.blocks is None else args.blocks
    else:
        missing = [o for o, v in (("--blocks", args.blocks), ("--decoupling", args.decoupling)) if v is None]
        if missing:
            raise SedonaError(f"{' and '.join(missing)} required (or --resume --out DIR to continue a run)")
        if args.arch is None:
            args.arch = _default_arch(args.decoupling)
        if (args.dataset or "digits") == "digits":
            args.width = DEMO_WIDTH if args.width is None else args.width
            args.image_size = DEMO_IMAGE_SIZE if args.image_size is None else args.image_size
        if args.out is None:
            dec = Path(args.decoupling).name.replace(":", "").removesuffix(".json")
            args.out = str(Path("runs") / f"{args.dataset or 'digits'}_{args.arch}_{dec}_pipeline")
    args.device = None  # devices are per block here (--devices); the shared option mapping reads this one
    cfg = train_config(args)
    if args.dtype:
        cfg.dtype = args.dtype
    defaults = PipelineConfig()
    kept = {k: getattr(args, k) if getattr(args, k) is not None else saved.get(k, getattr(defaults, k))
            for k in _KEPT_ON_RESUME}
    return PipelineConfig(train=cfg, blocks=args.blocks, resume=args.resume, port=args.port, **kept)


class PlainPipelineReporter(PipelineReporter):
    """One line per reporting interval: progress and each block's loss, rate, busy share and queue."""

    def __init__(self, console: Console, every: int) -> None:
        self.console, self.every, self._last = console, max(1, every), -1

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def start(self, info: RunInfo) -> None:
        self._print(f"pipeline: {len(info.blocks)} block processes, {info.total_steps} steps"
                    + (f" (resuming at {info.start_step})" if info.start_step else ""))
        for line in info.blocks + info.notes:
            self._print(f"  {line}")

    def blocks(self, fed: int, total: int, stats: dict[int, dict]) -> None:
        done = min((s["step"] for s in stats.values()), default=0)
        if self._last >= 0 and done - self._last < self.every and done != total:
            return
        self._last = done
        parts = [f"b{i} loss {s['loss']:.3f} {s['samples_per_s']:.0f}/s busy {s['busy_frac']:.0%} q{s['queue_depth']}"
                 for i, s in sorted(stats.items())]
        self._print(f"step {done}/{total} (fed {fed}) | " + " | ".join(parts))

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self._print(f"step {step}: val error {val_error:.2%} (best {best_error:.2%})")

    def note(self, line: str) -> None:
        self._print(f"  {line}")


class RichPipelineReporter(PipelineReporter):
    """A live table: per block its step, loss, throughput, busy and waiting time, queue depth, peak memory.

    The memory column says what each block measured (it reports its own `memory_kind`): peak RSS on
    CPU, peak CUDA allocation on GPU; with blocks on both, each cell says which it is.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = Live(console=console, refresh_per_second=4, transient=False)
        self.val = ""
        self.names: list[str] = []

    def start(self, info: RunInfo) -> None:
        self.names = info.blocks
        for line in info.notes:
            self.console.print(f"  {line}", markup=False, highlight=False)
        self.live.start()

    def blocks(self, fed: int, total: int, stats: dict[int, dict]) -> None:
        kinds = {s.get("memory_kind", "") for s in stats.values()}
        mixed = len(kinds) > 1
        mem_col = "peak memory" if mixed or not kinds else memory_label(kinds.pop())
        t = Table(title=f"fed {fed}/{total}{self.val}", title_justify="left")
        for col in ("block", "step", "loss", "samples/s", "busy", "wait in", "wait out", "queue", mem_col):
            t.add_column(col, justify="left" if col == "block" else "right")
        for i, s in sorted(stats.items()):
            name = self.names[i - 1] if i - 1 < len(self.names) else f"block {i}"
            t.add_row(name, str(s["step"]), f"{s['loss']:.4f}", f"{s['samples_per_s']:.0f}",
                      f"{s['busy_frac']:.0%}", f"{s['total_wait_in_s']:.1f}s", f"{s['total_wait_out_s']:.1f}s",
                      str(s["queue_depth"]),
                      fmt_mib(s["peak_memory"]) + (f" {SHORT_MEMORY_LABELS.get(s.get('memory_kind', ''), '')}" if mixed else ""))
        self.live.update(t)

    def validated(self, step: int, val_error: float, best_error: float) -> None:
        self.val = f"  val error {val_error:.1%} at step {step} (best {best_error:.1%})"

    def note(self, line: str) -> None:
        self.console.print(f"  {line}", markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()


def run(argv: list[str] | None) -> int:
    from sedona_runtime.pipeline.launcher import run_pipeline

    args = _parser().parse_args(argv)
    pcfg = build_config(args)
    rank = int(os.environ.get("RANK", "0"))
    console = Console(soft_wrap=True)  # long paths stay on one line in logs
    if rank != 0:
        return int(run_pipeline(pcfg))
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


def record_for_torchrun(line: str) -> None:
    """Under torchrun, hand our one-line error to its error file: torchrun's own failure report (printed
    after its traceback) then ends with this line as the root cause instead of 'To enable traceback...'."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as fp:
            json.dump({"message": line, "timestamp": str(int(time.time()))}, fp)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and a non-zero code otherwise."""
    return run_main(run, argv, "interrupted; continue with --resume (from the last committed checkpoint)",
                    on_error=record_for_torchrun)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
