"""Rank 0: feeds block 1 in the single-process trainer's data order, evaluates, checkpoints, reports."""
from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.channel import ChannelError
from sedona_runtime.pipeline.collector import SILENT, Collector
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.messages import Batch, Marker
from sedona_runtime.pipeline.placement import sharing_notes
from sedona_runtime.pipeline.protocol import (COORDINATOR, INBOX, STATE, SetupBroker, block_name, rpc_release,
                                              short)
from sedona_runtime.pipeline.rendezvous import Meeting, init_method_for, use_interface
from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel
from sedona_runtime.pipeline.rpc_runtime import Watchdog, abort_peers, start_rpc, stop_rpc
from sedona_runtime.pipeline.stop import STOP
from sedona_runtime.pipeline.transport import Transport
from sedona_runtime.training.block import cosine_factor
from sedona_runtime.training.display import Reporter, RunInfo
from sedona_runtime.training.evaluate import EvalResult, evaluate
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.interrupt import Interrupted, StopRequest, deferred_stop
from sedona_runtime.utils.io import atomic_torch_save, atomic_write_text

log = logging.getLogger(__name__)

TOKEN = ".pipeline-token"  # written by the coordinator, read by every block: do they share the run directory?


class PipelineFailed(SedonaError):
    """A block died, raised or went silent: the run was stopped (exit code 1)."""

    exit_code = 1


class PipelineReporter(Reporter):
    """A training Reporter that also sees the per-block runtime stats."""

    def blocks(self, fed: int, total: int, stats: dict[int, dict]) -> None:
        """Called after every reporting interval with the latest BlockStats dict of each block."""

    def note(self, line: str) -> None:
        """Something the user should know that was learnt after start (e.g. blocks sharing a GPU)."""


class Coordinator:
    """Drives one pipelined run from rank 0. `parts` come from training.greedy.build_parts (same seed).

    Evaluation gathers the weights rather than asking the blocks to evaluate: at each validation
    point a 'snapshot' marker travels down the pipe and every block sends its weights at exactly that
    step; the coordinator loads them into its own copy of the blocks (on the CPU: it holds no GPU
    memory) and runs training.evaluate, the very code the single-process trainer runs, while the
    blocks keep training. The test set is evaluated the same way on the final weights.
    """

    def __init__(self, pcfg: PipelineConfig, parts, run_dir, world_size: int, meeting: Meeting, store,
                 reporter: PipelineReporter | None = None,
                 child_failure: Callable[[], tuple[int, str] | None] | None = None,
                 notes: list[str] | None = None) -> None:
        self.pcfg, self.parts, self.run_dir = pcfg, parts, run_dir
        self.cfg = parts.cfg
        self.K = pcfg.blocks
        self.world_size, self.meeting, self.store = world_size, meeting, store
        self.reporter = reporter or PipelineReporter()
        self.child_failure = child_failure or (lambda: None)
        self.notes = list(notes or [])
        self.timeout = pcfg.timeout
        self.device = torch.device("cpu")  # the coordinator uses no GPU: its copy of the blocks evaluates on CPU
        self.dtype = getattr(torch, self.cfg.dtype)
        for b in parts.blocks:
            b.to(self.device, self.dtype)
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.start_step = 0
        self.peers = [block_name(i) for i in range(1, self.K + 1)]
        self.transport = Transport(pcfg.transport, 0, self.K, depth=pcfg.queue_depth, window=pcfg.window,
                                   timeout=pcfg.timeout)

    # -- setup ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the group, hand every block the run's setup, open the feed to block 1."""
        token = secrets.token_hex(16)
        atomic_write_text(self.run_dir.path / TOKEN, token)
        STATE.broker = broker = SetupBroker(self.K, {
            "train": self.cfg, "input_shape": tuple(self.parts.bundle.input_shape),
            "resume_step": self.start_step or None,
            "token": {"path": str(Path(self.run_dir.path).resolve() / TOKEN), "value": token}})
        self.inbox = RpcRecvChannel(INBOX, depth=max(16, 4 * self.K))
        self.collector = Collector(self.inbox, self.K)
        use_interface(self.meeting.iface)
        done, err = threading.Event(), []

        def _init() -> None:
            try:
                start_rpc(COORDINATOR, 0, self.world_size, init_method_for(self.store), device=torch.device("cpu"),
                          timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                err.append(exc)
            finally:
                done.set()

        # Joining is a barrier over all processes; a block that dies before joining would leave it
        # waiting forever, so the join runs aside while the launched processes are watched.
        threading.Thread(target=_init, name="rpc-init", daemon=True).start()
        self._wait(done, f"the {self.world_size - 1} block processes did not join within {self.timeout:.0f}s")
        if err:
            raise PipelineFailed(f"cannot join the RPC group: {short(err[0])}")
        self.collector.start()
        self.watchdog = Watchdog(self.peers, lambda peer, why: self.collector.fail(SILENT, why),
                                 self.pcfg.heartbeat, self.pcfg.heartbeat_timeout).start()
        self._wait(broker.complete, f"not every block registered within {self.timeout:.0f}s")
        for line in sharing_notes(broker.setup["placements"]):
            self.reporter.note(line)
        self._check()  # a block that cannot see the run directory says so before the group forms
        self.transport.connect(broker.setup["placements"], self.store)
        self.out = self.transport.output

    def _wait(self, event: threading.Event, timeout_message: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not event.wait(0.1):
            why = self.child_failure()
            if why:
                raise PipelineFailed(why[1])
            if getattr(self, "collector", None) is not None and self.collector.failed():
                self._check()
            if STOP.is_set():
                raise PipelineFailed(STOP.reason)
            if time.monotonic() > deadline:
                raise PipelineFailed(timeout_message)

    # -- the run ----------------------------------------------------------------------------------
    def run(self, stream) -> dict:
        """Train to the end (or fail with PipelineFailed naming the block); returns the summary."""
        t_start = time.perf_counter()
        connected = False
        notes = [n for n in [getattr(self.parts.bundle, "note", ""), self.parts.decoupling.source] if n] + self.notes
        self.reporter.start(RunInfo([b.name for b in self.parts.blocks], self.cfg.steps, self.start_step,
                                    f"{self.K} processes ({self.pcfg.transport} transport)", notes))
        STOP.clear()  # a stop left over from an earlier run in this process must not end this one
        # While the blocks train, they own the cores. The coordinator's work (batch assembly,
        # validation) runs on one thread: an intra-op pool would spin-wait on the blocks' cores and,
        # measured on 2 cores, slowed the blocks by 3-55% (benchmarks/README.md).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        # The first Ctrl-C / SIGTERM stops the feed at a step boundary; that step is checkpointed by every
        # block and committed before the run ends. A second one aborts at once.
        with deferred_stop(self._stop_requested) as stop:
            try:
                self.connect()
                connected = True
                last = self.feed(stream, stop)
                self.drain(last)
            except (ChannelError, PipelineFailed, KeyboardInterrupt) as exc:
                why = None if isinstance(exc, KeyboardInterrupt) or not connected else self._root_cause(exc)
                self._abort(exc)
                if why is None and isinstance(exc, KeyboardInterrupt):
                    raise
                raise PipelineFailed(why or str(exc)) from None
            except BaseException as exc:  # a bug here: still stop every block before propagating
                self._abort(exc)
                raise
            finally:
                torch.set_num_threads(threads)  # the blocks are done: the test evaluation may use every core
                if getattr(self, "inbox", None) is not None:
                    self.inbox.close()  # free the queue name: the registry is per process, not per run
                STATE.reset()
        if last < self.cfg.steps:  # stopped on request: the committed checkpoint is the result
            raise Interrupted(f"interrupted ({stop.name}) after step {last} of {self.cfg.steps}: checkpoint of step "
                              f"{last} committed in {self.run_dir.checkpoints}; continue with --resume --out "
                              f"{self.run_dir.path}", exit_code=stop.exit_code)
        wall = time.perf_counter() - t_start
        return self.finish(wall)

    def _stop_requested(self, request: StopRequest) -> None:
        self.reporter.note(f"{request.name}: stopping after step {getattr(self, 'fed', self.start_step)} and "
                           "committing a checkpoint there (a second Ctrl-C stops at once, without it)")

    def _root_cause(self, exc: BaseException) -> str:
        if isinstance(exc, PipelineFailed):
            return str(exc)
        deadline = time.monotonic() + 1.0  # the telling report (a death, a traceback) may trail the symptom
        while time.monotonic() < deadline:
            why = self.collector.failure(self.child_failure())
            if why:
                return why
            time.sleep(0.05)
        return str(exc)

    def _abort(self, exc: BaseException) -> None:
        """Tell every block to stop and leave the group (before joining, the launcher reaps the processes)."""
        if getattr(self, "watchdog", None) is None:
            return
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "the run failed"
        self.watchdog.stop()
        abort_peers(self.peers, reason)
        self.collector.stop()
        stop_rpc(graceful=False, timeout=3.0)

    def _check(self) -> None:
        if self.child_failure() is not None or self.collector.failed():
            raise PipelineFailed(self._root_cause(ChannelError("a block failed")))
        STOP.check()

    def feed(self, stream, stop: StopRequest | None = None) -> int:
        """Feed every step (or, once `stop` was requested, stop at a step boundary); the last step fed.

        The feed ends with a checkpoint marker for that step, so the run always ends on a committed
        checkpoint, interrupted or not.
        """
        cfg, total = self.cfg, self.cfg.steps
        self.fed = self.start_step
        saved = None
        for step in range(self.start_step, total):
            if stop is not None and stop.is_set():
                break
            self._check()
            x, y = stream.batch(step)
            self.out.put(Batch(step, x, y), self.timeout)
            s = self.fed = step + 1
            # Same points as the single-process trainer: validate, then checkpoint, both before the last step.
            if s < total and cfg.eval_interval and s % cfg.eval_interval == 0:
                self.out.put(Marker("snapshot", s), self.timeout)
            if s < total and cfg.checkpoint_interval and s % cfg.checkpoint_interval == 0:
                self.out.put(Marker("checkpoint", s), self.timeout)
                saved = s
            self.service()
        if saved != self.fed or self.fed == total:
            self.out.put(Marker("checkpoint", self.fed), self.timeout)
        self.out.close(self.timeout)
        return self.fed

    def drain(self, last: int) -> None:
        """Wait (bounded) for every block's final weights and the checkpoint of step `last`; release the blocks."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._check()
            self.service()
            with self.collector.lock:
                if len(self.collector.finals) == self.K and not self.collector.saved.get(last, set()) ^ set(
                        range(1, self.K + 1)):
                    break
                self.collector.lock.wait(0.05)
            if time.monotonic() > deadline:
                raise PipelineFailed(f"blocks did not finish within {self.timeout:.0f}s")
        self.service()
        self.commit(last)
        self.watchdog.stop()
        for peer in self.peers:
            rpc.rpc_sync(peer, rpc_release, timeout=10.0)
        self.collector.stop()
        stop_rpc(graceful=True, timeout=30.0)
        self.transport.close(graceful=True)
        (self.run_dir.path / TOKEN).unlink(missing_ok=True)

    # -- periodic work on the coordinator thread ----------------------------------------------------
    def service(self) -> None:
        c = self.collector
        for step in sorted(c.snapshots):
            states = c.pop_complete(c.snapshots, step)
            if states is not None:
                self.validate(step, states)
        for step in sorted(c.saved):
            if step != self.fed and c.pop_complete(c.saved, step) is not None:
                self.commit(step)
        for step in sorted(c.metrics_by_step):
            stats = c.pop_complete(c.metrics_by_step, step)
            if stats is not None:
                self.log_metrics(step, stats)

    def commit(self, step: int) -> None:
        ckpt.commit(self.run_dir.checkpoints, step, self.K, {"best_val": self.best_val, "best_step": self.best_step})

    def log_metrics(self, step: int, stats: dict[int, dict]) -> None:
        cfg = self.cfg
        ordered = [stats[i] for i in range(1, self.K + 1)]
        lr = cfg.lr * cosine_factor(step - 1, cfg.steps, cfg.final_lr / cfg.lr)
        rate = min(s["samples_per_s"] for s in ordered)  # a pipeline runs at its slowest block's pace
        self.run_dir.log({"step": step, "loss": [s["loss"] for s in ordered], "lr": lr, "samples_per_s": rate,
                          "blocks": ordered})
        self.reporter.blocks(self.fed, cfg.steps, dict(self.collector.metrics))

    def _load(self, states: dict[int, dict]) -> None:
        for i, block in enumerate(self.parts.blocks, start=1):
            block.load_state_dict(states[i])

    def evaluate(self, dataset) -> EvalResult:
        from sedona_runtime.data import eval_batches

        return evaluate(self.parts.blocks, eval_batches(dataset, self.cfg.eval_batch_size), self.device, self.dtype)

    def validate(self, step: int, states: dict[int, dict]) -> float | None:
        """Validation error of the weights at `step`; best.pt like the single-process trainer's."""
        val = self.parts.bundle.val
        if val is None or len(val) == 0:
            return None
        self._load(states)
        err = self.evaluate(val).top1_error
        self.run_dir.log({"step": step, "val_top1_error": err})
        if self.best_val is None or err < self.best_val:
            self.best_val, self.best_step = err, step
            atomic_torch_save(self.run_dir.best_weights, {"step": step, "val_error": err,
                                                          "blocks": [b.state_dict() for b in self.parts.blocks]})
        self.reporter.validated(step, err, self.best_val)
        return err

    def finish(self, wall: float) -> dict:
        c, total, cfg = self.collector, self.cfg.steps, self.cfg
        bad = {i: s for i, s in c.final_steps.items() if s != total}
        if bad:
            raise PipelineFailed(f"blocks ended at steps {bad}, expected {total}")
        self.validate(total, c.finals)
        test = self.evaluate(self.parts.bundle.test)
        stats = [c.metrics.get(i, {}) for i in range(1, self.K + 1)]
        train_s = max((s.get("total_busy_s", 0.0) + s.get("total_wait_in_s", 0.0) for s in stats), default=0.0)
        summary = {
            "steps": total,
            "K": self.K,
            "decoupling": self.parts.decoupling.to_json()["blocks"],
            "test": dataclasses.asdict(test),
            "test_accuracy": 1.0 - test.top1_error,
            "best_val_error": self.best_val,
            "best_val_step": self.best_step,
            "wall_time_s": wall,
            "train_time_s": train_s,
            "samples_per_s": (total - self.start_step) * cfg.batch_size / max(wall, 1e-9),
            "peak_memory_bytes": [s.get("peak_memory", 0) for s in stats],
            "peak_reserved_bytes": [s.get("peak_reserved", 0) for s in stats],
            # Each block reports its own kind; a run mixing CPU and GPU blocks has no single label.
            "peak_memory_kind": _one_kind([s.get("memory_kind", "") for s in stats]),
            "device": "pipeline",
            "pipeline": {"blocks": stats, "transport": self.pcfg.transport, "queue_depth": self.pcfg.queue_depth,
                         "window": self.pcfg.window, "world_size": self.world_size,
                         "resumed_from": self.start_step or None},
        }
        if c.timelines:
            summary["pipeline"]["timeline"] = {str(i): [list(x) for x in c.timelines[i]] for i in sorted(c.timelines)}
        self.run_dir.write_summary(summary)
        self.reporter.finish(summary)
        return summary


def _one_kind(kinds: list[str]) -> str:
    """The blocks' common peak-memory kind, or "mixed"."""
    return kinds[0] if kinds and all(k == kinds[0] for k in kinds) else "mixed"
