"""Starting a data-parallel search on R processes: self-launched (`--devices a,b,...`) or torchrun's.

Self-launched, this process is rank 0: it builds its runner first (so every refusal, the run lock and
config.json happen before anything starts), serves the run's store on loopback (pipeline/rendezvous.py),
starts ranks 1..R-1 as plain subprocesses (their settings pickled on stdin, as pipeline/launcher.py does)
and waits for each to report ready or die. Under torchrun every rank runs the CLI and meets in torchrun's
store. Rank 0 alone writes the run directory and reports; a rank that dies ends the search with one line
naming it (self-launched) and the last checkpoint kept. Every rank reads the run directory on resume: a
search over several machines needs its --out on a shared filesystem to resume.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from sedona_runtime.pipeline import rendezvous
from sedona_runtime.pipeline.affinity import parse_devices
from sedona_runtime.search import distributed
from sedona_runtime.search.config import SearchConfig
from sedona_runtime.search.runner import Reporter, SearchResult, SearchRunner, SearchStopped
from sedona_runtime.utils.config import from_dict, to_dict
from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)
START_TIMEOUT = 600.0  # s for every rank to build its data and network (a rank that dies is seen at once)
GROUP_TIMEOUT = 1800.0  # s a collective waits for a stalled (alive but stuck) rank; a dead one fails at once
_READY = "search/ready/"


class SearchFailed(SedonaError):
    """A rank of a data-parallel search died or left; the message names it and the checkpoint kept."""

    exit_code = 1


@dataclasses.dataclass
class RankJob:
    """What a self-launched rank needs (pickled to its stdin)."""

    cfg: dict
    out: str
    resume: bool
    rank: int
    world: int
    port: int
    device: str
    threads: int


def torchrun_world() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment ((1, 0, 0) for a lone process)."""
    env = os.environ
    rank = int(env.get("RANK", "0"))
    return int(env.get("WORLD_SIZE", "1")), rank, int(env.get("LOCAL_RANK", rank))


def check_devices(spec: str) -> list[str]:
    """The comma list of `--devices` (cpu or cuda:N each); SedonaError for a device that does not exist."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise SedonaError("--devices: give one device per process, e.g. cpu,cpu or cuda:0,cuda:1")
    parse_devices(spec, len(items))
    return items


def _threads(threads: int, ranks_here: int) -> int:
    # One core per rank by default: R ranks of PyTorch's one-thread-per-core each would oversubscribe.
    return threads or max(1, (os.cpu_count() or 1) // ranks_here)


def run_parallel(cfg: SearchConfig, out: str, devices: list[str] | None, *, resume: bool, overwrite: bool,
                 reporter: Reporter | None, threads: int = 0) -> SearchResult | int | None:
    """Run this process's rank of the search: rank 0 returns run()'s result, a rank > 0 its exit code.

    `devices`: one per rank (self-launched: R = len(devices); torchrun: one per local rank, or None for
    cfg.device, `cuda` meaning cuda:LOCAL_RANK). Raises SedonaError (bad settings, before anything starts)
    and SearchFailed (a rank died); KeyboardInterrupt/SearchStopped on rank 0 as SearchRunner.run does.
    """
    size, rank, local = torchrun_world()
    if size == 1:
        assert devices is not None and len(devices) > 1
        return _spawned(cfg, str(Path(out).absolute()), devices, resume, overwrite, reporter, threads)
    if devices is not None:
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
        if len(devices) != local_size:
            raise SedonaError(f"--devices lists {len(devices)} device(s) but torchrun starts {local_size} "
                              "process(es) on this machine (one device each)")
        cfg.device = devices[local]
    elif cfg.device == "cuda":
        cfg.device = f"cuda:{local}"
    cfg.shards = size
    torch.set_num_threads(_threads(threads, int(os.environ.get("LOCAL_WORLD_SIZE", size))))
    runner = SearchRunner(cfg, out, resume=resume, overwrite=overwrite, reporter=reporter if rank == 0 else None,
                          sharding=_group(size, rank, cfg))
    store = rendezvous.env_store(rank, size, START_TIMEOUT)
    distributed.connect(store, rank, size, runner.device, GROUP_TIMEOUT)
    try:
        if rank == 0:
            return _drive(runner, lambda: "a rank of the search left (torchrun names it)")
        return _follow(runner, rank)
    finally:
        distributed.close()


def _group(size: int, rank: int, cfg: SearchConfig) -> distributed.RankGroup:
    from sedona_runtime.training.greedy import resolve_device

    return distributed.RankGroup(size, rank, resolve_device(cfg.device))


def _spawned(cfg: SearchConfig, out: str, devices: list[str], resume: bool, overwrite: bool,
             reporter: Reporter | None, threads: int) -> SearchResult | None:
    size = len(devices)
    cfg.shards, cfg.device = size, devices[0]
    per_rank = _threads(threads, size)
    torch.set_num_threads(per_rank)
    runner = SearchRunner(cfg, out, resume=resume, overwrite=overwrite, reporter=reporter,
                          sharding=_group(size, 0, cfg))
    listener = rendezvous.listen_loopback(0)
    ranks, ok = Ranks(), False
    try:
        port = listener.getsockname()[1]
        store = rendezvous.serve_store(listener, size, START_TIMEOUT)
        for r in range(1, size):
            job_cfg = dataclasses.replace(cfg, device=devices[r])
            ranks.start(RankJob(to_dict(job_cfg), out, resume, r, size, port, devices[r], per_rank))
        ranks.wait_ready(store, size)
        distributed.connect(store, 0, size, runner.device, GROUP_TIMEOUT)
        result = _drive(runner, ranks.failure)
        ok = True
        return result
    except KeyboardInterrupt:
        ok = True  # stopped at a step boundary: every rank stops there too
        raise
    finally:
        distributed.close()
        ranks.reap(30.0 if ok else 3.0)
        listener.close()


def _drive(runner: SearchRunner, who: Callable[[], str | None]) -> SearchResult | None:
    """Rank 0: run, and turn a failed collective into one line naming the rank and the checkpoint kept."""
    try:
        return runner.run()
    except RuntimeError as exc:  # gloo/NCCL: a peer's connection closed, or a collective timed out
        deadline = time.monotonic() + 5.0
        culprit = who()
        while culprit is None and time.monotonic() < deadline:  # the dead rank's exit status may lag
            time.sleep(0.1)
            culprit = who()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchFailed(f"{culprit or 'a rank of the search failed (' + first + ')'}; the search stopped at "
                           f"step {runner.step}; {_kept(runner)}") from None


def _kept(runner: SearchRunner) -> str:
    path = runner.run_dir.last_checkpoint
    if not path.is_file():
        return "no checkpoint had been written"
    step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"]
    return f"checkpoint of step {step} kept in {path} (continue with --resume)"


def _follow(runner: SearchRunner, rank: int) -> int:
    """A rank > 0: run; its exit code (rank 0 reports the search)."""
    try:
        runner.run()
        return 0
    except SearchStopped as exc:
        return exc.exit_code
    except RuntimeError as exc:  # rank 0 or another rank left
        print(f"error: rank {rank}: the search's process group failed ({str(exc).strip().splitlines()[0]})",
              file=sys.stderr)
        return 1


def child_entry() -> int:
    """Entry point of a self-launched rank: its RankJob arrives pickled on stdin."""
    try:  # die with rank 0 even if it is killed outright (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    job: RankJob = pickle.load(sys.stdin.buffer)
    logging.basicConfig(level=logging.WARNING, format=f"[rank{job.rank}] %(levelname)s %(name)s: %(message)s")
    code = 1
    try:
        torch.set_num_threads(job.threads)
        cfg = from_dict(SearchConfig, job.cfg, where=f"rank {job.rank}'s settings")
        runner = SearchRunner(cfg, job.out, resume=job.resume, sharding=_group(job.world, job.rank, cfg))
        store = rendezvous.connect_store(rendezvous.LOOPBACK, job.port, job.world, START_TIMEOUT)
        store.set(f"{_READY}{job.rank}", "1")
        distributed.connect(store, job.rank, job.world, runner.device, GROUP_TIMEOUT)
        code = _follow(runner, job.rank)
    except KeyboardInterrupt:
        code = 130
    except SedonaError as exc:
        print(f"error: rank {job.rank}: {exc}", file=sys.stderr)
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip teardown: a peer may be gone, and destroying the group would wait for it


class Ranks:
    """The self-launched ranks 1..R-1: start, wait until ready, name a dead one, always reap."""

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, job: RankJob) -> None:
        code = "import sys; from sedona_runtime.search.parallel import child_entry; sys.exit(child_entry())"
        p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        self.procs[job.rank] = p
        p.stdin.write(pickle.dumps(job))
        p.stdin.close()

    def failure(self) -> str | None:
        """'rank r (pid p) was killed by SIGKILL' / 'exited with code c' for the first dead rank, or None."""
        for r, p in self.procs.items():
            code = p.poll()
            if code is None or code == 0:
                continue
            if code < 0:
                try:
                    how = f"was killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                how = f"exited with code {code}"
            return f"rank {r} (pid {p.pid}) {how}"
        return None

    def wait_ready(self, store, size: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        waiting = set(range(1, size))
        while waiting:
            waiting = {r for r in waiting if not store.check([f"{_READY}{r}"])}
            failed = self.failure()
            if failed:
                raise SedonaError(f"{failed} before the search began (its error is above)")
            if waiting and time.monotonic() > deadline:
                raise SedonaError(f"rank(s) {', '.join(map(str, sorted(waiting)))} did not start within "
                                  f"{START_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def reap(self, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        for r, p in self.procs.items():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("killing rank %d (pid %d), still running after %.0fs", r, p.pid, grace)
                p.kill()
                p.wait(5.0)
