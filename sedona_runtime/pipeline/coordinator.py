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
from sedona_runtime.pipeline.config import PipelineConfig, agreed_settings
from sedona_runtime.pipeline.feed_plan import feed_plan, validation_steps
from sedona_runtime.pipeline.messages import Batch, EvalBatch, Marker
from sedona_runtime.pipeline.placement import sharing_notes
from sedona_runtime.pipeline.protocol import COORDINATOR, INBOX, STATE, SetupBroker, rpc_release, short
from sedona_runtime.pipeline.replicas import layout_of, shard_batch
from sedona_runtime.pipeline.rendezvous import Meeting, init_method_for, use_interface
from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel
from sedona_runtime.pipeline.rpc_runtime import Watchdog, abort_peers, start_rpc, stop_rpc
from sedona_runtime.pipeline.service import Service
from sedona_runtime.pipeline.stop import STOP
from sedona_runtime.pipeline.transport import Transport
from sedona_runtime.training.display import Reporter, RunInfo, block_layers, network_line
from sedona_runtime.training.schedule import Schedule
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.interrupt import Interrupted, StopRequest, deferred_stop
from sedona_runtime.utils.io import atomic_write_text

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
    """Drives one pipelined run from rank 0. `parts` come from training.greedy.build_parts (the run's spec, its
    data; its model may live on the meta device: the coordinator never uses it). Every block builds from
    `parts.spec`, shipped in the setup handshake.

    The coordinator feeds raw batches (as stored, with their augmentation draws) to block 1, which
    preprocesses them on its device. Evaluation flows through the blocks: at each validation point a
    'validate' marker and the validation batches travel down the pipe in order with the training
    batches, so every block evaluates exactly the weights the single-process trainer has at that step;
    each block reports its own head's logits and the coordinator only counts them (EvalRounds with the
    trainer's ErrorCounter). The test split is evaluated the same way after the last step. The
    coordinator holds no model, no weights and no GPU memory.

    What it sends is the run's schedule (training/schedule.py, the one the trainer walks) mapped onto batches
    and markers (feed_plan.py). Two threads: this one feeds (and may block on backpressure); the Service
    (service.py) counts, promotes, commits and logs meanwhile.
    """

    def __init__(self, pcfg: PipelineConfig, parts, run_dir, world_size: int, meeting: Meeting, store,
                 reporter: PipelineReporter | None = None,
                 child_failure: Callable[[], tuple[int, str] | None] | None = None,
                 notes: list[str] | None = None, workers: int = 0) -> None:
        self.pcfg, self.parts, self.run_dir = pcfg, parts, run_dir
        self.cfg = parts.cfg
        self.K = pcfg.blocks
        self.world_size, self.meeting, self.store = world_size, meeting, store
        self.reporter = reporter or PipelineReporter()
        self.child_failure = child_failure or (lambda: None)
        self.notes = list(notes or [])
        self.timeout = pcfg.timeout
        self.workers = workers
        self.best_val: float | None = None   # a resumed run's, from its commit record (the Service takes it on)
        self.best_step: int | None = None
        self.start_step = 0
        self.fed = 0
        self.service: Service | None = None
        # K blocks x R replicas (replicas.py): K*R block processes; replica 0 of each block reports metrics,
        # checkpoints and logits, every process reports ready and final.
        self.layout = layout_of(pcfg)
        self.R, self.processes = self.layout.replicas, self.layout.processes
        self.peers = [self.layout.name(i) for i in range(1, self.processes + 1)]
        self.transport = Transport(pcfg.transport, 0, self.K, depth=pcfg.queue_depth, window=pcfg.window,
                                   timeout=pcfg.timeout, layout=self.layout)

    # -- setup ------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the group, hand every block the run's setup, open the feed to block 1."""
        token = secrets.token_hex(16)
        atomic_write_text(self.run_dir.path / TOKEN, token)
        # The run's spec (as config.json holds it) is all a block builds from; the process settings every
        # block must share with this one are checked by each (config.AGREED).
        STATE.broker = broker = SetupBroker(self.processes, {
            "spec": self.parts.spec.to_json(), "pipeline": agreed_settings(self.pcfg),
            "resume_step": self.start_step or None,
            "token": {"path": str(Path(self.run_dir.path).resolve() / TOKEN), "value": token}})
        self.inbox = RpcRecvChannel(INBOX, depth=max(16, 4 * self.processes))
        self.collector = Collector(self.inbox, self.K, self.processes)
        use_interface(self.meeting.iface)
        done, err = threading.Event(), []

        start = self.pcfg.start_timeout

        def _init() -> None:
            try:
                start_rpc(COORDINATOR, 0, self.world_size, init_method_for(self.store), device=torch.device("cpu"),
                          timeout=start)
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
                err.append(exc)
            finally:
                done.set()

        # Joining is a barrier over all processes; a block that dies before joining would leave it
        # waiting forever, so the join runs aside while the launched processes are watched.
        threading.Thread(target=_init, name="rpc-init", daemon=True).start()
        self._wait(done.is_set, f"the {self.world_size - 1} block processes did not join within {start:.0f}s", start)
        if err:
            raise PipelineFailed(f"cannot join the RPC group: {short(err[0])}")
        self.collector.start()
        labels = {self.layout.name(i): self.layout.label(i) for i in range(1, self.processes + 1)}
        # A silent peer is named as the messages name it ("block1 replica 1"; R = 1: its RPC name).
        self.watchdog = Watchdog(self.peers, lambda peer, why: self.collector.fail(SILENT, why),
                                 self.pcfg.heartbeat, self.pcfg.heartbeat_timeout, labels=labels).start()
        self._wait(broker.complete.is_set, f"not every block registered within {start:.0f}s", start)
        for line in sharing_notes(broker.setup["placements"]):
            self.reporter.note(line)
        # Building the blocks (and loading a resumed checkpoint) can fail: watch for that before the
        # p2p transport's barrier, which would only time out.
        self._wait(lambda: len(self.collector.ready) == self.processes, f"not every block was built within {start:.0f}s",
                   start)
        self.transport.connect(broker.setup["placements"], self.store)
        self.out = self.transport.output
        self.outs = self.transport.outputs  # one per replica of block 1

    def _wait(self, done: Callable[[], bool], timeout_message: str, timeout: float) -> None:
        """Wait for `done()` while watching the launched processes, the blocks' reports and the stop signal."""
        deadline = time.monotonic() + timeout
        while not done():
            why = self.child_failure()
            if why:
                raise PipelineFailed(why[1])
            if getattr(self, "collector", None) is not None and self.collector.failed():
                self._check()
            if STOP.is_set():
                raise PipelineFailed(STOP.reason)
            if time.monotonic() > deadline:
                raise PipelineFailed(timeout_message)
            time.sleep(0.05)

    # -- the run ----------------------------------------------------------------------------------
    def run(self, stream) -> dict:
        """Train to the end (or fail with PipelineFailed naming the block); returns the summary."""
        t_start = time.perf_counter()
        connected = False
        notes = ([network_line(self.cfg, self.parts.bundle.input_shape)]
                 + [n for n in [getattr(self.parts.bundle, "note", ""), self.parts.decoupling.source] if n] + self.notes)
        self.reporter.start(RunInfo([b.name for b in self.parts.blocks], self.cfg.steps, self.start_step,
                                    (f"{self.K} processes" if self.R == 1 else
                                     f"{self.K} blocks x {self.R} replicas ({self.processes} processes)")
                                    + f" ({self.pcfg.transport} transport)", notes, block_layers(self.parts.blocks)))
        STOP.clear()  # a stop left over from an earlier run in this process must not end this one
        # While the blocks train, they own the cores. The coordinator's work (reading batches, counting
        # logits) runs on one thread: an intra-op pool would spin-wait on the blocks' cores and, measured
        # on 2 cores, slowed the blocks by 3-55% (benchmarks/README.md).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        # The first Ctrl-C / SIGTERM stops the feed at a step boundary; that step is checkpointed by every
        # block and committed before the run ends. A second one aborts at once.
        with deferred_stop(self._stop_requested) as stop:
            try:
                plan = self.plan()
                batches = self.read_ahead(stream, plan)
                self.connect()
                connected = True
                self.start_service(plan)
                last = self.feed(plan, batches, stop)
                self.drain(last)
            except (ChannelError, PipelineFailed, KeyboardInterrupt) as exc:
                why = None if isinstance(exc, KeyboardInterrupt) or not connected else self._root_cause(exc)
                self._abort(exc)
                if why is None and isinstance(exc, KeyboardInterrupt):  # a second stop signal: at once
                    raise self._stopped_at_once(stop) from None
                raise PipelineFailed(why or str(exc)) from None
            except BaseException as exc:  # a bug here: still stop every block before propagating
                self._abort(exc)
                raise
            finally:
                if self.service is not None:  # never left running (it writes the run directory)
                    self.service.stop(timeout=5.0)
                (self.run_dir.path / TOKEN).unlink(missing_ok=True)  # only a live run needs it
                torch.set_num_threads(threads)  # the caller's setting again
                if getattr(self, "inbox", None) is not None:
                    self.inbox.close()  # free the queue name: the registry is per process, not per run
                STATE.reset()
        if last < self.cfg.steps:  # stopped on request: the committed checkpoint is the result
            raise Interrupted(f"interrupted ({stop.name}) after step {last} of {self.cfg.steps}: checkpoint of step "
                              f"{last} committed in {self.run_dir.checkpoints}; continue with --resume --out "
                              f"{self.run_dir.path}", exit_code=stop.exit_code)
        wall = time.perf_counter() - t_start
        return self.finish(wall)

    def _stopped_at_once(self, stop: StopRequest) -> Interrupted:
        """What a second stop signal (no checkpoint of the current step) leaves: the last committed one."""
        record = ckpt.committed(self.run_dir.checkpoints)
        what = f"interrupted at once ({stop.name or 'SIGINT'}, twice)"
        if record is None:
            return Interrupted(f"{what}: no checkpoint had been committed, nothing to resume", exit_code=stop.exit_code)
        return Interrupted(f"{what}: the last committed checkpoint is step {record['step']} in "
                           f"{self.run_dir.checkpoints}; continue with --resume --out {self.run_dir.path}",
                           exit_code=stop.exit_code)

    def _stop_requested(self, request: StopRequest) -> None:
        what = "Ctrl-C" if request.name == "SIGINT" else request.name
        self.reporter.note(f"{what}: stopping at the next step boundary (step {self.fed} fed) and committing "
                           f"a checkpoint there (a second {what} stops at once, without it)")

    def _root_cause(self, exc: BaseException) -> str:
        if isinstance(exc, PipelineFailed):
            return str(exc)
        if self.service is not None and self.service.error:  # it stopped the run (STOP): the put's Aborted says less
            return self.service.error
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
        if self.service is not None:  # before reading the commit record: no commit is under way after this
            self.service.stop(timeout=5.0)
        self.watchdog.stop()
        abort_peers(self.peers, reason)
        self.collector.stop()
        stop_rpc(graceful=False, timeout=3.0)

    def _check(self) -> None:
        if self.service is not None and self.service.error:
            raise PipelineFailed(self.service.error)
        if self.child_failure() is not None or self.collector.failed():
            raise PipelineFailed(self._root_cause(ChannelError("a block failed")))
        STOP.check()

    @property
    def schedule(self) -> Schedule:
        """The run's events from the start (or resumed) step: the single-process trainer's."""
        return Schedule(self.cfg, start=self.start_step)

    def plan(self) -> list:
        """Every item the run sends, in order: the schedule's events mapped (feed_plan): a data.feeder.Task per
        batch (training steps, validation rounds at the trainer's points, the final validation and the test
        round) and a Marker per validation and checkpoint."""
        bundle = self.parts.bundle
        return feed_plan(self.schedule, {"val": bundle.val, "test": bundle.test}, self.cfg.eval_batch_size)

    def read_ahead(self, stream, plan: list):
        """The plan's raw batches (its Tasks), decoded ahead by `workers` processes that start now (while blocks
        start)."""
        from sedona_runtime.data.feeder import Task, read_ahead

        bundle = self.parts.bundle
        return read_ahead([t for t in plan if isinstance(t, Task)], stream=stream, splits={"val": bundle.val, "test": bundle.test},
                          eval_batch_size=self.cfg.eval_batch_size, workers=self.workers)

    def start_service(self, plan: list) -> Service:
        """Start the bookkeeping thread (service.py); it stops the run (STOP) with its error, if it has one."""
        self.service = Service(self.collector, self.run_dir, self.K, self.schedule, self.reporter,
                               validations=validation_steps(plan), best_val=self.best_val, best_step=self.best_step,
                               fed=lambda: self.fed, on_error=STOP.set)
        return self.service.start()

    def feed(self, plan: list, batches, stop: StopRequest | None = None) -> int:
        """Send the plan (or, once `stop` was requested, stop at a step boundary); the last step fed.

        Batches leave raw (uint8 as stored, with their augmentation draws), a raw batch from `batches` per Task.
        A stop is taken before a training step: what the schedule puts after the step before (its validation,
        its checkpoint) was sent. A stopped feed ends with a checkpoint marker for the last step fed (unless
        that step's was the last marker sent), so the run always ends on a committed checkpoint.
        """
        self.fed = self.start_step
        checkpointed = None  # the step of the last checkpoint marker sent
        stopped = False
        batches = iter(batches)
        for item in plan:
            if isinstance(item, Marker):  # down every replica row (each replica checks its step count against it)
                self._put_all(item)
                if item.kind == "checkpoint":
                    checkpointed = item.step
            elif item.split == "train":
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                self._check()
                raw = next(batches)
                # Replica r of block 1 gets shard r (R = 1: the batch itself).
                for out, shard in zip(self.outs, shard_batch(Batch(item.step, raw.x, raw.y, raw.draws, raw=True),
                                                             self.R)):
                    out.put(shard, self.timeout)
                self.fed = item.step + 1
            else:
                raw = next(batches)
                # Evaluation runs down replica row 0 only, whole batches: replica 0's weights and running
                # statistics are the block's (replicas.py), counted exactly as without replicas.
                self.out.put(EvalBatch(item.split, item.step, item.index, item.count, raw.x, raw.y, raw=True),
                             self.timeout)
                self._check()
        if stopped:
            for event in Schedule.on_stop(self.fed, checkpointed):
                self._put_all(Marker("checkpoint", event.step))
        for out in self.outs:
            out.close(self.timeout)
        return self.fed

    def _put_all(self, marker: Marker) -> None:
        """A marker travels down every replica row (each replica's step count is checked against it)."""
        for out in self.outs:
            out.put(marker, self.timeout)

    def drain(self, last: int) -> None:
        """Wait (bounded) for every block's end, then for the Service's last pass (the checkpoint of step `last`
        committed, every evaluation round counted); release the blocks."""
        c = self.collector
        while True:
            self._check()
            with c.lock:
                if len(c.finals) == self.processes:  # a block's final report is its last: all are in
                    break
                c.lock.wait(0.05)
                silent = time.monotonic() - c.last_report
            if silent > self.timeout:  # bounded by progress: the last evaluation rounds may take long
                raise PipelineFailed(f"the blocks reported nothing for {self.timeout:.0f}s while finishing")
        if not self.service.stop(timeout=self.timeout, last_pass=True):
            raise PipelineFailed(f"the coordinator's bookkeeping (metrics, checkpoints) did not finish within "
                                 f"{self.timeout:.0f}s")
        self._check()
        if self.service.committed != last:
            raise PipelineFailed(f"the checkpoint of step {last} was not committed (every block ended)")
        self.watchdog.stop()
        for peer in self.peers:
            rpc.rpc_sync(peer, rpc_release, timeout=10.0)
        self.collector.stop()
        stop_rpc(graceful=True, timeout=30.0)
        self.transport.close(graceful=True)
        (self.run_dir.path / TOKEN).unlink(missing_ok=True)

    def finish(self, wall: float) -> dict:
        c, total, cfg = self.collector, self.cfg.steps, self.cfg
        bad = {i: s for i, s in c.final_steps.items() if s != total}
        if bad:
            raise PipelineFailed(f"blocks ended at steps {bad}, expected {total}")
        service = self.service
        if service.test is None:
            raise PipelineFailed("the test evaluation did not complete")
        test = service.test
        stats = [c.metrics.get(i, {}) for i in range(1, self.K + 1)]
        train_s = max((s.get("total_busy_s", 0.0) + s.get("total_wait_in_s", 0.0) for s in stats), default=0.0)
        summary = {
            "steps": total,
            "K": self.K,
            "decoupling": self.parts.decoupling.to_json()["blocks"],
            "test": dataclasses.asdict(test),
            "test_accuracy": 1.0 - test.top1_error,
            "best_val_error": service.best_val,
            "best_val_step": service.best_step,
            "wall_time_s": wall,
            "train_time_s": train_s,
            "samples_per_s": (total - self.start_step) * cfg.batch_size / max(wall, 1e-9),
            "peak_memory_bytes": [s.get("peak_memory", 0) for s in stats],
            "peak_reserved_bytes": [s.get("peak_reserved", 0) for s in stats],
            # Each block reports its own kind; a run mixing CPU and GPU blocks has no single label.
            "peak_memory_kind": _one_kind([s.get("memory_kind", "") for s in stats]),
            "device": "pipeline",
            "pipeline": {"blocks": stats, "transport": self.pcfg.transport, "queue_depth": self.pcfg.queue_depth,
                         "window": self.pcfg.window, "world_size": self.world_size, "replicas": self.R,
                         "replica_placement": self.pcfg.replica_placement,
                         "resumed_from": self.start_step or None},
        }
        if service.last_val is not None:
            summary["val"] = dataclasses.asdict(service.last_val)
        if c.timelines:
            summary["pipeline"]["timeline"] = {str(i): [list(x) for x in c.timelines[i]] for i in sorted(c.timelines)}
        self.run_dir.write_summary(summary)
        self.reporter.finish(summary)
        return summary


def _one_kind(kinds: list[str]) -> str:
    """The blocks' common peak-memory kind, or "mixed"."""
    return kinds[0] if kinds and all(k == kinds[0] for k in kinds) else "mixed"
