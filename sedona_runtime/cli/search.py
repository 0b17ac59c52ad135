"""`python -m sedona_runtime.search`: the SEDONA search for where to cut a network and which heads to use."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.markup import escape

from sedona_runtime.cli._common import (DATASET_HELP, MODEL_HELP, OneLineParser, apply_options, dataset_option,
                                        resolve_import_paths, run_main, take_model_option)
from sedona_runtime.cli.display import fmt_time
from sedona_runtime.search.config import PRESETS, SearchConfig, apply_preset
from sedona_runtime.training.config import embedded_defaults
from sedona_runtime.utils.config import from_dict
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.imports import is_import_path


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sedona_runtime.search",
                     description="Search where to cut a network into gradient-isolated blocks (alpha) and which "
                                 "auxiliary head each block gets (beta) (SEDONA, ICLR 2021); writes decoupling files "
                                 "for `python -m sedona_runtime.train --decoupling`. Defaults follow Appendix E.1.")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="named settings to start from; quick: the small net on digits, done in minutes on a CPU")
    p.add_argument("--arch", help="architecture (small, small_resnet, vgg19, resnet50, resnet101, resnet152)")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--width", type=float, help="channel width multiplier (the paper searches at 0.25)")
    p.add_argument("--dataset", type=dataset_option, help=DATASET_HELP)
    p.add_argument("--data-dir", help="data directory (cifar10, cifar100, imagefolder)")
    p.add_argument("--image-size", type=int, help="input resolution (default 32; imagefolder 64)")
    p.add_argument("--batch-size", type=int, help="batch size (default 128)")
    p.add_argument("--val-fraction", type=float, help="share of the training split that validates (default 0.4)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--head-pool", type=_names, help="candidate heads, comma-separated (default aux1,aux2,aux3,aux4)")
    p.add_argument("--head-width", type=int, help="head width (default 512 at CIFAR scale, 2048 above)")
    p.add_argument("--pretrain-steps", type=int, help="pretraining iterations with alpha = beta = 0 (default 40000)")
    p.add_argument("--eval-every", type=int, help="validate during pretraining every N steps (default 80)")
    p.add_argument("--eval-batches", type=int, help="cap on validation batches per evaluation (default: all)")
    p.add_argument("--memory-size", type=int, help="weight sets kept in memory (default 50)")
    p.add_argument("--search-steps", type=int, help="outer (bilevel) steps (default 2000)")
    p.add_argument("--inner-steps", type=int, help="T, unrolled inner steps per outer step (default 5; 1: ablation)")
    p.add_argument("--val-batch-size", type=int,
                   help="validation images per outer step for the hypergradient (default 1024, as the release)")
    p.add_argument("--no-fast-heads", dest="fast_heads", action="store_false", default=None,
                   help="train the heads with PyTorch's own layers (same functions and hypergradient, slower)")
    p.add_argument("--recompute", action=argparse.BooleanOptionalAction, default=None,
                   help="hypergradient by recomputing each inner step instead of storing the unrolled graph (the same "
                        "result, about 1/T of its memory, more time; with --shards N one shard at a time, about 1/N "
                        "again); default: only where the stored one would not fit")
    p.add_argument("--no-weight-sampling", dest="weight_sampling", action="store_false", default=None,
                   help="ablation: always continue from the newest weights")
    p.add_argument("--no-pretrain", dest="pretrain", action="store_false", default=None,
                   help="ablation: start the bilevel loop from the initial weights")
    p.add_argument("--random-alpha", action="store_true", default=None,
                   help="also write Table 4's baseline: random alpha with the learned beta")
    p.add_argument("--random-beta", action="store_true", default=None,
                   help="also write Table 4's baseline: the learned alpha with random beta")
    p.add_argument("--blocks", type=_ints,
                   help="K values to write decouplings for, each at most the layer count (default: those of 2,4,8,16 "
                        "that fit)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 500; also at phase ends)")
    p.add_argument("--config", help="a search config JSON (e.g. a previous run's config.json); options override it")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--devices",
                   help="data-parallel search on one process per device, e.g. cpu,cpu or cuda:0,cuda:1 (started "
                        "here; under torchrun one device per local process): every batch cut into one shard per "
                        "device, batch norm per shard, gradients averaged")
    p.add_argument("--shards", type=int,
                   help="cut every batch into N shards in this one process: batch norm on each shard's own "
                        "statistics (as on N devices: a different search from the unsharded one), gradients averaged; "
                        "the same search as N processes; with --recompute one shard's graph at a time (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads on CPU (default 0: PyTorch's choice, one per core)")
    p.add_argument("--seed", type=int, help="model init, data split, batch order and weight sampling (default 0)")
    p.add_argument("--out", default="runs/search", help="output directory (default runs/search)")
    p.add_argument("--resume", action="store_true", help="continue the stopped search in --out")
    p.add_argument("--export", action="store_true",
                   help="write the decouplings of the stopped search in --out from its last checkpoint, and exit")
    p.add_argument("--overwrite", action="store_true", help="replace a search already in --out")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return p


# CLI option -> (section, field) of SearchConfig; section None is the top level.
_FIELDS = {
    "arch": ("model", "arch"), "width": ("model", "width"), "dataset": ("data", "dataset"),
    "data_dir": ("data", "data_dir"), "image_size": ("data", "image_size"), "batch_size": ("data", "batch_size"),
    "val_fraction": ("data", "val_fraction"), "augment": ("data", "augment"),
    **{name: (None, name) for name in (
        "head_pool", "head_width", "pretrain_steps", "eval_every", "eval_batches", "memory_size", "search_steps",
        "inner_steps", "weight_sampling", "pretrain", "random_alpha", "random_beta", "blocks", "checkpoint_every",
        "device", "val_batch_size", "fast_heads", "shards", "recompute")},
}


def build_config(args: argparse.Namespace) -> SearchConfig:
    """Defaults (or --config, or the stopped run's config.json with --resume), then --preset, then the options."""
    import json

    take_model_option(args)
    source = args.config or (str(Path(args.out) / "config.json") if args.resume else None)
    if source:
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise SedonaError(f"cannot read config {source}: {exc}") from None
        cfg = from_dict(SearchConfig, data, where=source)
    else:
        cfg = SearchConfig()
    if args.preset:
        apply_preset(cfg, args.preset)
    apply_options(cfg, args, _FIELDS)  # --seed also drives the weight sampling (cfg.seed)
    if args.preset:
        # A preset's width and input size are for its own network and data: a user's network is taken as
        # it is, another data set at its own size (unless given on the command line).
        if is_import_path(cfg.model.arch) and args.width is None:
            cfg.model.width = None
        preset_data = PRESETS[args.preset].get("data", {})
        if args.image_size is None and cfg.data.dataset != preset_data.get("dataset", cfg.data.dataset):
            cfg.data.image_size = None  # another data set (CIFAR's 32x32, a user's images) keeps its own size
    resolve_import_paths(cfg.model, cfg.data)
    # One set of defaults with `train` and launch/greedy.py: on the embedded digits, width 0.25 and the
    # smallest input the network takes; the resolved values go into config.json.
    cfg.model, cfg.data = embedded_defaults(cfg.model, cfg.data)
    return cfg


def _line(r: dict) -> str:
    val = ""
    if r.get("val_loss") is not None:
        val = f"  val loss {r['val_loss']:.4f} err {r['val_error']:.2%}"
    return (f"{r['phase']:8s} step {r['step']}/{r['total']}  train {r['train_loss']:.4f}{val}  "
            f"{r['sec_per_step']:.2f} s/step  eta {fmt_time(r['eta_s'])}")


def _network(r: dict) -> str:
    """The start line's network: arch, width and layers (as the trainers' run headers say it)."""
    width = f" x{r['width']:g}" if r.get("width") is not None else ""
    return f"{r['arch']}{width} ({r['num_layers']} layers)"


def _steps(r: dict) -> str:
    """The start line's step count, split into its phases (progress lines count steps over the whole search)."""
    pretrain = r.get("pretrain")
    if pretrain is None:
        return f"{r['total']} steps"
    return f"{r['total']} steps ({pretrain} pretraining + {r['total'] - pretrain} outer)"


def stop_line(r: dict) -> str:
    """What Ctrl-C did: at once "stopping after the current step", then where the checkpoint is."""
    if r["kind"] == "stopping":
        return (f"Ctrl-C: the search stops after the current step (step {r['step'] + 1} of {r['total']}) and "
                "saves a checkpoint; press Ctrl-C again to stop at once without saving that step")
    return f"stopped after step {r['step']} of {r['total']}; checkpoint {r['checkpoint']}"


class PlainReporter:
    """Progress lines (for logs and pipes), at most one per `every` steps and at phase changes."""

    def __init__(self, write: Callable[[str], None], every: int) -> None:
        self.write, self.every, self._last, self._phase = write, max(1, every), -1, ""

    def event(self, r: dict) -> None:
        if r["kind"] == "start":
            what = f"resuming at step {r['step']}" if r["step"] else "searching"
            self.write(f"{what}: {_network(r)} on {r['device']}, {_steps(r)}; {r['data']}")
            if r.get("memory"):
                self.write(r["memory"])
        elif r["kind"] in ("stopping", "stopped"):
            self.write(stop_line(r))
        elif r["kind"] == "progress":
            if r["phase"] != self._phase or r["step"] - self._last >= self.every or r["step"] == r["total"]:
                self._last, self._phase = r["step"], r["phase"]
                self.write(_line(r))

    def close(self) -> None:
        pass


class RichReporter:
    """A live progress bar: phase, step, validation loss/error, time per step, ETA."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), console=console)
        self.task = None

    def event(self, r: dict) -> None:
        if r["kind"] in ("stopping", "stopped"):
            self.console.print(stop_line(r), markup=False, highlight=False)
        elif r["kind"] == "start":
            self.console.print(f"search: {_network(r)} on {r['device']}, {_steps(r)}; {r['data']}",
                               markup=False, highlight=False)
            if r.get("memory"):
                self.console.print(r["memory"], markup=False, highlight=False)
            self.task = self.bar.add_task("search", total=r["total"], completed=r["step"], phase="start", info="")
            self.bar.start()
        elif r["kind"] == "progress" and self.task is not None:
            val = f"val loss {r['val_loss']:.4f} err {r['val_error']:.1%}  " if r.get("val_loss") is not None else ""
            info = f"{val}{r['sec_per_step']:.2f} s/step  eta {fmt_time(r['eta_s'])}"
            self.bar.update(self.task, completed=r["step"], phase=r["phase"], info=info)

    def close(self) -> None:
        if self.task is not None:
            self.bar.stop()
            self.task = None


def train_command(cfg: SearchConfig, decouplings: list[str]) -> str | None:
    """The `python -m sedona_runtime.train` command that trains one written decoupling (K = 4, the paper's
    Table 2, when it was written) on the searched network and data."""
    if not decouplings:
        return None
    from sedona_runtime.utils.imports import is_import_path

    path = next((p for p in decouplings if p.endswith("_k4.json")), decouplings[0])
    parts = ["python", "-m", "sedona_runtime.train",
             "--model" if is_import_path(cfg.model.arch) else "--arch", cfg.model.arch]
    if cfg.model.width is not None:
        parts += ["--width", f"{cfg.model.width:g}"]
    parts += ["--dataset", cfg.data.dataset]
    if cfg.data.data_dir:
        parts += ["--data-dir", cfg.data.data_dir]
    if cfg.data.image_size is not None:
        parts += ["--image-size", str(cfg.data.image_size)]
    parts += ["--decoupling", path]
    return " ".join(shlex.quote(p) for p in parts)


def _print_written(console: Console, cfg: SearchConfig, written: dict) -> None:
    for kind, paths in written["decouplings"].items():
        console.print(f"{kind}: " + ", ".join(escape(p) for p in paths), highlight=False)
    if written["figure"]:
        console.print(f"figure: {escape(written['figure'])}", highlight=False)
    command = train_command(cfg, written["decouplings"].get("learned", []))
    if command:
        console.print(f"train it: {escape(command)}", highlight=False, soft_wrap=True)


def _search(cfg: SearchConfig, args: argparse.Namespace, reporter):
    """The search in this process, or this process's rank of a data-parallel one (search/parallel.py)."""
    from sedona_runtime.search.parallel import check_devices, run_parallel, torchrun_world
    from sedona_runtime.search.runner import SearchRunner

    devices = check_devices(args.devices) if args.devices else None
    world = torchrun_world()[0]
    if world > 1 or (devices and len(devices) > 1):
        ranks = world if world > 1 else len(devices)
        if args.shards is not None and args.shards != ranks:
            raise SedonaError(f"--shards {args.shards} does not match the {ranks} processes of the search (one "
                              "shard per process): leave --shards out")
        return run_parallel(cfg, args.out, devices, resume=args.resume, overwrite=args.overwrite,
                            reporter=reporter, threads=args.threads)
    if devices:
        cfg.device = devices[0]
    return SearchRunner(cfg, args.out, resume=args.resume, overwrite=args.overwrite, reporter=reporter).run()


def run(argv: list[str] | None) -> int:
    """Parse, search, print where the results are; SedonaError propagates to `main`."""
    from sedona_runtime.search.export import export_checkpoint

    args = _parser().parse_args(argv)
    console = Console(soft_wrap=True)
    if args.export:
        if args.resume or args.overwrite:
            raise SedonaError("--export writes the decouplings of the search in --out; it cannot be combined with "
                              "--resume or --overwrite")
        from sedona_runtime.training.run_dir import RunDir

        run_dir = RunDir(args.out)
        if not run_dir.last_checkpoint.is_file():
            raise SedonaError(f"--export: no search checkpoint at {run_dir.last_checkpoint}")
        cfg = from_dict(SearchConfig, run_dir.read_config(), where=str(run_dir.config))
        written = export_checkpoint(args.out)
        more = (" (continue the search with --resume)" if written["outer_steps"] < written["search_steps"]
                else " (the search is finished)")
        console.print(f"{args.out}: decouplings after {written['outer_steps']} of {written['search_steps']} outer "
                      f"steps{more}", highlight=False)
        _print_written(console, cfg, written)
        return 0
    cfg = build_config(args)
    if args.threads < 0:
        raise SedonaError(f"--threads: must be 0 (one per core) or a positive count, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if console.is_terminal and not args.plain:
        reporter: PlainReporter | RichReporter = RichReporter(console)
    else:
        total = (cfg.pretrain_steps if cfg.pretrain else 0) + cfg.search_steps
        reporter = PlainReporter(lambda s: console.print(s, markup=False, highlight=False), every=max(1, total // 20))
    try:
        result = _search(cfg, args, reporter)
        if isinstance(result, int):  # a rank > 0 of a torchrun search: rank 0 reports
            return result
    except KeyboardInterrupt as exc:  # SearchStopped after a checkpoint, or a second Ctrl-C
        reporter.close()
        out = shlex.quote(args.out)
        if (Path(args.out) / "checkpoints" / "last.pt").is_file():
            print(f"interrupted; continue with: python -m sedona_runtime.search --resume --out {out}\n"
                  f"or write the decouplings so far: python -m sedona_runtime.search --export --out {out}",
                  file=sys.stderr)
        else:
            print("interrupted before the first checkpoint: nothing to resume", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    finally:
        reporter.close()
    assert result is not None  # run() without stop_after always finishes
    s = result.summary
    _print_written(console, cfg, s)
    mem = f"peak RSS {s['peak_rss_mib']:.0f} MiB"
    if s["cuda_max_allocated_mib"] is not None:
        mem += f", peak CUDA alloc {s['cuda_max_allocated_mib']:.0f} MiB"
    val = f"final val loss {s['final_val_loss']:.4f}, error {s['final_val_error']:.2%}; " if s["final_val_loss"] is not None else ""
    console.print(f"{val}{s['sec_per_outer_step']:.2f} s per outer step on {s['device']}; {mem}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 on success; `error: <message>` on stderr and exit code 2 for bad input."""
    return run_main(run, argv, "interrupted")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
