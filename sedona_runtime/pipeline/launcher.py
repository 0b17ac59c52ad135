"""Starting a pipelined run: self-launched block processes (world size 1) or torchrun's (world size K*R+1)."""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline import queue_budget, rendezvous
from sedona_runtime.pipeline.affinity import parse_devices
from sedona_runtime.pipeline.collector import DIED, EXITED
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.coordinator import Coordinator, PipelineFailed, PipelineReporter
from sedona_runtime.pipeline.placement import Placement, local_placements, place_block
from sedona_runtime.pipeline.rendezvous import Meeting
from sedona_runtime.pipeline.replicas import check_shards, layout_of
from sedona_runtime.pipeline.worker import run_stage
from sedona_runtime.training.config import resolve_defaults
from sedona_runtime.utils.config import to_dict
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.interrupt import Interrupted

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
    """'spawn' (start the K*R block processes here) or 'torchrun' (use the group); SedonaError on a mismatch."""
    k, r = pcfg.blocks, pcfg.replicas
    if world.size == 1:
        return "spawn"
    if world.size == k * r + 1:
        return "torchrun"
    if r == 1:
        raise SedonaError(f"world size {world.size} does not fit --blocks {k}: start 1 process (it launches the "
                          f"{k} blocks itself) or {k + 1} (rank 0 coordinator + one per block)")
    raise SedonaError(f"world size {world.size} does not fit --blocks {k} --replicas {r}: start 1 process (it "
                      f"launches the {k * r} block processes itself) or {k * r + 1} (rank 0 coordinator + one per "
                      "block replica)")


def resolve(pcfg: PipelineConfig) -> PipelineConfig:
    """The coordinator's first step: validate the pipeline settings and fill what the training options decide
    (training.config.resolve_defaults, the resolver's first stage, as the single-process trainer), so that a
    batch the replicas cannot split is refused before any data is read. The run's spec is resolved after."""
    pcfg.validate()
    pcfg = dataclasses.replace(pcfg, train=resolve_defaults(pcfg.train))
    check_shards(pcfg.train.batch_size, pcfg.replicas)  # the shard rule: R equal shards of every batch
    return pcfg


def child_entry() -> int:
    """Entry point of a self-launched block process: its arguments arrive pickled on stdin."""
    try:  # die with the coordinator even if it is killed outright (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    pcfg, rank, world_size, meeting, place = pickle.load(sys.stdin.buffer)
    label = layout_of(pcfg).label(rank)  # block{k}, or "block{k} replica {r}"
    logging.basicConfig(level=logging.WARNING, format=f"[{label}] %(levelname)s %(name)s: %(message)s")
    code = run_stage(pcfg, rank, world_size, meeting, place)
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
        self.labels: list[str] = []  # how messages name each process (replicas.Layout.label)

    def start(self, pcfg: PipelineConfig, meeting: Meeting, places: list[Placement]) -> None:
        code = "import sys; from sedona_runtime.pipeline.launcher import child_entry; sys.exit(child_entry())"
        layout = layout_of(pcfg)
        self.labels = [layout.label(i) for i in range(1, len(places) + 1)]
        for i, place in enumerate(places, start=1):
            p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
            self.procs.append(p)
            p.stdin.write(pickle.dumps((pcfg, i, layout.world_size, meeting, place)))
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
                cand = (DIED, f"{self.labels[i - 1]} (pid {p.pid}) was killed by {name}")
            else:
                cand = (EXITED, f"{self.labels[i - 1]} (pid {p.pid}) exited with code {code}")
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
                log.warning("killing %s (pid %d), still running after %.0fs", self.labels[i - 1], p.pid, grace)
                p.kill()
                p.wait(5.0)


def run_pipeline(pcfg: PipelineConfig, reporter: PipelineReporter | None = None,
                 world: World | None = None, overwrite: bool = False) -> dict | int:
    """Run this process's part: the coordinator returns the summary, a block process its exit code.

    `overwrite` replaces a previous run in the output directory (its checkpoints, metrics, summary).
    """
    from sedona_runtime.training.greedy import build_parts
    from sedona_runtime.training.run_dir import RunDir

    world = world or World.from_env()
    mode = check_world(pcfg, world)
    pcfg.validate()
    layout = layout_of(pcfg)
    explicit = parse_devices(pcfg.devices, layout.processes, "blocks" if layout.replicas == 1 else
                             f"block processes ({layout.blocks} blocks x {layout.replicas} replicas, in rank order)")
    if pcfg.iface:
        rendezvous.check_interface(pcfg.iface)
    if world.rank != 0:
        # A block reads no training option of its own: it builds the coordinator's spec, shipped in the setup
        # handshake, and refuses process settings that disagree with the coordinator's (config.AGREED).
        nxt = layout.next_ranks(world.rank) if layout.replicas > 1 else [-1]
        place = place_block(pcfg.devices, explicit, pcfg.threads, world.rank, world.local_rank, world.local_size,
                            nxt[0] if nxt else None)
        return run_stage(pcfg, world.rank, world.size, Meeting(iface=pcfg.iface), place)

    pcfg = resolve(pcfg)
    # Every process reads and writes the run directory by the coordinator's absolute path.
    pcfg = dataclasses.replace(pcfg, train=dataclasses.replace(pcfg.train, out_dir=str(Path(pcfg.train.out_dir).absolute())))
    run = RunDir(pcfg.train.out_dir)
    commit = run.checkpoints / ckpt.COMMIT
    # Everything that can be refused is refused before the run directory is created or touched: the
    # directory (another live run holds it, a finished run asked to resume), data, decoupling, the
    # queues' memory, the port.
    run.check(resume=pcfg.resume, overwrite=overwrite, checkpoint=commit)
    parts = build_parts(dataclasses.replace(pcfg.train, device="cpu"), meta=True,  # the coordinator holds no weights
                        progress=reporter.checking_images if reporter is not None else None)
    if parts.decoupling.K != pcfg.blocks:
        raise SedonaError(f"--blocks {pcfg.blocks} does not match the decoupling {pcfg.train.decoupling!r}, "
                          f"which has K = {parts.decoupling.K} blocks")
    queue_budget.check(parts, pcfg.queue_depth, pcfg.window, parts.cfg.batch_size)
    # config.json: the run's spec (what every block builds) and how it is spread over processes.
    resolved = {**parts.spec.to_json(), "pipeline": {k: v for k, v in to_dict(pcfg).items() if k != "train"}}
    listener = None
    if mode == "spawn":  # one machine: everything listens on loopback only
        listener = rendezvous.listen_loopback(pcfg.port)
        meeting = Meeting(rendezvous.LOOPBACK, listener.getsockname()[1], rendezvous.loopback_interface())
    else:
        meeting = Meeting(iface=pcfg.iface)
    try:
        # The coordinator owns the run directory (its lock) until every block process is gone.
        with run.prepare(resume=pcfg.resume, overwrite=overwrite, checkpoint=commit):
            if pcfg.resume:
                record = ckpt.committed(run.checkpoints)
                _check_resume(run, resolved)
                # The settings a resume may change (transport, devices, ...) are recorded as this run uses them.
                saved = run.read_config()
                run.write_config({**saved, "pipeline": {**resolved["pipeline"],
                                                        "resume": saved.get("pipeline", {}).get("resume", False)}})
            else:
                record = None
                ckpt.remove_all(run.checkpoints)  # a replaced (--overwrite) pipeline run's checkpoints
                run.write_config(resolved)
            places = (local_placements(pcfg.devices, explicit, pcfg.threads, pcfg.blocks, layout) if mode == "spawn"
                      else [])
            return _coordinate(pcfg, parts, run, record, meeting, listener, world, places, reporter)
    finally:
        if listener is not None:
            listener.close()  # a no-op once the store took it over


def _coordinate(pcfg: PipelineConfig, parts, run, record: dict | None, meeting: Meeting, listener, world: World,
                places: list[Placement], reporter: PipelineReporter | None) -> dict:
    """Start the self-launched blocks (`places`; none under torchrun) and drive the run; always reap them."""
    from sedona_runtime.training.greedy import data_workers, make_stream

    children = Children()
    ok = False
    try:
        world_size = layout_of(pcfg).world_size
        store = (rendezvous.serve_store(listener, world_size, pcfg.timeout) if listener is not None
                 else rendezvous.env_store(0, world.size, pcfg.timeout))
        coord = Coordinator(pcfg, parts, run, world_size, meeting, store, reporter, children.failure,
                            workers=data_workers(parts))
        if record is not None:
            coord.start_step = int(record["step"])
            coord.best_val, coord.best_step = record.get("best_val"), record.get("best_step")
            run.truncate_metrics(coord.start_step)
        children.start(pcfg, meeting, places)
        try:
            summary = coord.run(make_stream(parts))
        except PipelineFailed as exc:
            last = ckpt.committed(run.checkpoints)
            where = (f"checkpoint of step {last['step']} kept in {run.checkpoints} (continue with --resume)"
                     if last else "no checkpoint had been committed")
            raise PipelineFailed(f"{exc}; {where}") from None
        ok = True
        return summary
    except Interrupted:
        ok = True  # a clean stop: the blocks were released and are leaving
        raise
    finally:
        children.reap(30.0 if ok else 5.0)  # after a failure the blocks were told to stop


def _check_resume(run, resolved: dict) -> None:
    """The resume rules of a pipeline run (training.resume_rules) between its config.json and this resume."""
    from sedona_runtime.training.resume_rules import check_resume
    from sedona_runtime.training.spec import read_spec

    config = run.read_config()
    kept = set(resolved["pipeline"])  # the settings this version records (an older run's others are gone)
    saved = {**read_spec(run, config).to_json(),
             "pipeline": {k: v for k, v in (config.get("pipeline") or {}).items() if k in kept}}
    check_resume("pipeline", saved, resolved, str(run.path))


