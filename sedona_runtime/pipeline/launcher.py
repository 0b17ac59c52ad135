"""Starting a pipelined run: self-launched block processes (world size 1) or torchrun's (world size K+1)."""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import pickle
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.affinity import available_cores, core_sets, parse_devices, resolve_device
from sedona_runtime.pipeline.collector import DIED, EXITED
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.coordinator import Coordinator, PipelineFailed, PipelineReporter
from sedona_runtime.pipeline.worker import Placement, run_stage
from sedona_runtime.training.config import resolve_defaults
from sedona_runtime.utils.config import to_dict
from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)


@dataclass
class World:
    """This process's place in the group, from torchrun's environment (or a lone process)."""

    size: int
    rank: int
    local_rank: int
    local_size: int

    @classmethod
    def from_env(cls) -> "World":
        env = os.environ
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        return cls(size, rank, int(env.get("LOCAL_RANK", rank)), int(env.get("LOCAL_WORLD_SIZE", size)))


def check_world(pcfg: PipelineConfig, world: World) -> str:
    """'spawn' (start the K blocks here) or 'torchrun' (use the group); SedonaError on a mismatch."""
    k = pcfg.blocks
    if world.size == 1:
        return "spawn"
    if world.size == k + 1:
        return "torchrun"
    raise SedonaError(f"world size {world.size} does not fit --blocks {k}: start 1 process (it launches the "
                      f"{k} blocks itself) or {k + 1} (rank 0 coordinator + one per block)")


def check_port(port: int) -> int:
    """A free loopback port: `port` itself (SedonaError when taken) or, for 0, one the OS picks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SedonaError(f"--port {port} is already in use on this machine; pick another or 0") from None
            raise SedonaError(f"cannot use --port {port}: {exc.strerror or exc}") from None
        return s.getsockname()[1]


def resolve(pcfg: PipelineConfig) -> PipelineConfig:
    """Validate the pipeline settings and fill the training defaults (exactly as the single-process trainer)."""
    pcfg.validate()
    return dataclasses.replace(pcfg, train=resolve_defaults(pcfg.train))


def _placements(pcfg: PipelineConfig, explicit: list[str] | None) -> list[Placement]:
    """Ranks 1..K on this machine: block i on device slot i-1 and its own core set."""
    devices = [str(resolve_device(pcfg.devices, i, explicit)) for i in range(pcfg.blocks)]
    cores = core_sets(pcfg.blocks)
    out = []
    for i in range(pcfg.blocks):
        maps = None
        if i + 1 < pcfg.blocks and devices[i].startswith("cuda") and devices[i + 1].startswith("cuda"):
            maps = {f"block{i + 2}": {devices[i]: devices[i + 1]}}
        out.append(Placement(rank=i + 1, device=devices[i], cores=cores[i], threads=pcfg.threads, device_maps=maps))
    return out


def _torchrun_placement(pcfg: PipelineConfig, world: World, explicit: list[str] | None) -> Placement:
    """This block's placement from its torchrun local rank (device maps only within one machine)."""
    slot = world.local_rank
    if explicit is not None:
        device = explicit[world.rank - 1]
    else:
        device = str(resolve_device(pcfg.devices, slot))
    cores = core_sets(world.local_size)[slot]
    maps = None
    if world.local_size == world.size and world.rank < pcfg.blocks and device.startswith("cuda"):
        nxt = explicit[world.rank] if explicit is not None else str(resolve_device(pcfg.devices, slot + 1))
        if nxt.startswith("cuda"):
            maps = {f"block{world.rank + 1}": {device: nxt}}
    return Placement(rank=world.rank, device=device, cores=cores, threads=pcfg.threads, device_maps=maps)


def child_entry() -> int:
    """Entry point of a self-launched block process: its arguments arrive pickled on stdin."""
    try:  # die with the coordinator even if it is killed outright (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    pcfg, index, world_size, init_method, place = pickle.load(sys.stdin.buffer)
    logging.basicConfig(level=logging.WARNING, format=f"[block{index}] %(levelname)s %(name)s: %(message)s")
    code = run_stage(pcfg, index, world_size, init_method, place)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: the RPC agent is already stopped


class Children:
    """The self-launched block processes: start, watch, and always reap.

    Plain subprocesses (not multiprocessing's spawn, which would re-run the torchrun script as
    __main__) that stay in the caller's process group, so a terminal's Ctrl-C reaches them too.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, pcfg: PipelineConfig, init_method: str, places: list[Placement]) -> None:
        code = "import sys; from sedona_runtime.pipeline.launcher import child_entry; sys.exit(child_entry())"
        for i, place in enumerate(places, start=1):
            p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
            self.procs.append(p)
            p.stdin.write(pickle.dumps((pcfg, i, pcfg.blocks + 1, init_method, place)))
            p.stdin.close()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def failure(self) -> tuple[int, str] | None:
        """The most telling dead child so far: killed by a signal beats exited with an error code."""
        worst = None
        for i, p in enumerate(self.procs, start=1):
            code = p.poll()
            if code is None or code == 0:
                continue
            if code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                cand = (DIED, f"block{i} (pid {p.pid}) was killed by {name}")
            else:
                cand = (EXITED, f"block{i} (pid {p.pid}) exited with code {code}")
            if worst is None or cand[0] < worst[0]:
                worst = cand
        return worst

    def reap(self, grace: float = 10.0) -> None:
        """Wait for the children to exit (they were told to stop), then kill what is left."""
        deadline = time.monotonic() + grace
        for i, p in enumerate(self.procs, start=1):
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("killing block%d (pid %d), still running after %.0fs", i, p.pid, grace)
                p.kill()
                p.wait(5.0)


def run_pipeline(pcfg: PipelineConfig, reporter: PipelineReporter | None = None,
                 world: World | None = None, overwrite: bool = False) -> dict | int:
    """Run this process's part: the coordinator returns the summary, a block process its exit code.

    `overwrite` replaces a previous run in the output directory (its checkpoints, metrics, summary).
    """
    from sedona_runtime.training.greedy import build_parts, make_stream
    from sedona_runtime.training.run_dir import RunDir

    world = world or World.from_env()
    mode = check_world(pcfg, world)
    pcfg = resolve(pcfg)
    explicit = parse_devices(pcfg.devices, pcfg.blocks)
    if world.rank != 0:
        place = _torchrun_placement(pcfg, world, explicit)
        return run_stage(pcfg, world.rank, world.size, "env://", place)

    run = RunDir(pcfg.train.out_dir)
    record = _prepare(run, pcfg.resume, overwrite)
    parts = build_parts(dataclasses.replace(pcfg.train, device="cpu"))  # bad decoupling/data fail here
    if parts.decoupling.K != pcfg.blocks:
        raise SedonaError(f"--blocks {pcfg.blocks} does not match the decoupling {pcfg.train.decoupling!r}, "
                          f"which has K = {parts.decoupling.K} blocks")
    resolved = {"train": to_dict(parts.cfg), "decoupling": parts.decoupling.to_json(),
                "data_note": getattr(parts.bundle, "note", ""),
                "pipeline": {k: v for k, v in to_dict(pcfg).items() if k != "train"}}
    init_method = f"tcp://127.0.0.1:{check_port(pcfg.port)}" if mode == "spawn" else "env://"
    if record is not None:
        _check_resume(run, resolved)
    else:
        run.write_config(resolved)

    children = Children()
    notes = []
    places = _placements(pcfg, explicit) if mode == "spawn" else []
    if places and all(p.device == "cpu" for p in places) and pcfg.blocks > len(available_cores()):
        notes.append(f"{pcfg.blocks} blocks share {len(available_cores())} CPU cores round-robin: they run, "
                     "but do not each get a core of their own")
    coord = Coordinator(pcfg, parts, run, pcfg.blocks + 1, init_method, reporter, children.failure, notes)
    if record is not None:
        coord.start_step = int(record["step"])
        coord.best_val, coord.best_step = record.get("best_val"), record.get("best_step")
        run.truncate_metrics(coord.start_step)
    ok = False
    try:
        if mode == "spawn":
            children.start(pcfg, init_method, places)
        try:
            summary = coord.run(make_stream(parts))
        except PipelineFailed as exc:
            last = ckpt.committed(run.checkpoints)
            where = (f"checkpoint of step {last['step']} kept in {run.checkpoints} (continue with --resume)"
                     if last else "no checkpoint had been committed")
            raise PipelineFailed(f"{exc}; {where}") from None
        ok = True
        return summary
    finally:
        children.reap(30.0 if ok else 5.0)  # after a failure the blocks were told to stop


def _prepare(run, resume: bool, overwrite: bool = False) -> dict | None:
    """Check the run directory before anything starts; the committed checkpoint record when resuming."""
    record = ckpt.committed(run.checkpoints) if run.checkpoints.is_dir() else None
    if resume:
        if record is None:
            raise SedonaError(f"cannot resume: no committed pipeline checkpoint in {run.checkpoints}")
        return record
    if overwrite and record is not None:
        ckpt.remove_all(run.checkpoints)
        record = None
    if record is not None:
        raise SedonaError(f"output directory {run.path} already holds a run; "
                          "pass --resume to continue it, --overwrite to replace it, or choose another --out")
    run.prepare(resume=False, overwrite=overwrite)  # the single-process files (and their checks)
    return None


def _check_resume(run, resolved: dict) -> None:
    from sedona_runtime.training.greedy import check_resume_config

    check_resume_config(run.read_config().get("train", {}), resolved["train"], run)


