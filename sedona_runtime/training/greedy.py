"""The single-process greedy block-wise trainer: the reference every other execution mode is checked against."""
from __future__ import annotations

import dataclasses
import errno
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from sedona_runtime.training.block import Block, BlockRunner, NonFiniteLossError, memory_kind
from sedona_runtime.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from sedona_runtime.training.config import TrainConfig, resolve_defaults
from sedona_runtime.training.display import Progress, Reporter, RunInfo, network_line
from sedona_runtime.training.evaluate import EvalResult, eval_record, evaluate
from sedona_runtime.training.resolve import resolve_device
from sedona_runtime.training.resume_rules import check_resume
from sedona_runtime.training.run_dir import RunDir
from sedona_runtime.training.schedule import CHECKPOINT, TEST, TRAIN, VALIDATE, Schedule
from sedona_runtime.training.spec import RunSpec, read_spec
from sedona_runtime.utils.config import to_dict
from sedona_runtime.utils.errors import SedonaError
from sedona_runtime.utils.interrupt import Interrupted, StopRequest, deferred_stop
from sedona_runtime.utils.io import WriteError, atomic_torch_save, os_error_in
from sedona_runtime.utils.run_lock import RunLock

log = logging.getLogger(__name__)



@dataclass
class RunParts:
    """Everything a run is built from and builds: its spec, data, model, decoupling, blocks, device."""

    spec: RunSpec             # the resolved run (config.json)
    bundle: Any               # sedona_runtime.data.DataBundle
    model: torch.nn.Module    # LayeredNet; its modules are shared with `blocks`
    blocks: list[Block]
    device: torch.device

    @property
    def cfg(self) -> TrainConfig:
        """The resolved TrainConfig (spec.train)."""
        return self.spec.train

    @property
    def decoupling(self):
        """The resolved Decoupling (spec.decoupling)."""
        return self.spec.decoupling


def build_parts(cfg: TrainConfig, *, meta: bool = False, progress=None) -> RunParts:
    """The run of options `cfg`: its spec by the one resolver (training.resolver.resolve_run: options, data,
    decoupling, input statistics), then its network by the one builder (training.build.build_network: under
    `torch.manual_seed(cfg.seed)`, model first, heads in block order).

    `meta`: build the model and heads on the meta device (shapes, no weights, no memory): what the
    pipeline's coordinator needs, which never runs the network. `progress(done, total, elapsed_s)`: the data's
    image check (data.build_data), when it takes a while. SedonaError for a bad device, option, data or
    decoupling.
    """
    from sedona_runtime.training.build import build_network
    from sedona_runtime.training.resolver import resolve_run

    device = resolve_device(cfg.device)
    run = resolve_run(cfg, progress=progress)
    net = build_network(run.spec, meta=meta)
    return RunParts(run.spec, run.bundle, net.model, net.blocks, device)


def make_stream(parts: RunParts):
    """The deterministic training batch stream (batch of global step t is a function of (seed, t))."""
    from sedona_runtime.data import BatchStream

    return BatchStream(parts.bundle.train, parts.cfg.batch_size, parts.cfg.seed, parts.bundle.augment)


def data_workers(parts: RunParts) -> int:
    """DataLoader worker processes that read batches ahead: --workers, else data.feeder.default_workers."""
    from sedona_runtime.data.feeder import default_workers

    w = parts.cfg.data.workers
    return default_workers(parts.bundle.train) if w is None else w


def eval_split(parts: RunParts, dataset, runners: list[BlockRunner]) -> EvalResult:
    """Errors of the chained blocks on `dataset` (fixed order, no augmentation, normalized on their device)."""
    from sedona_runtime.data import Preprocess
    from sedona_runtime.data.feeder import eval_batches_raw

    first = runners[0]
    pre = Preprocess(dataset.mean, dataset.std)
    batches = ((pre(raw, first.device), raw.y)
               for raw in eval_batches_raw(dataset, parts.cfg.eval_batch_size, data_workers(parts)))
    return evaluate(parts.blocks, batches, first.device, first.dtype, amp=first.amp)



class GreedyTrainer:
    """Trains K gradient-isolated blocks in one process: `for r in runners: x = r.train_step(x, y).out`."""

    def __init__(self, cfg: TrainConfig, reporter: Reporter | None = None, shards: int = 1) -> None:
        self.cfg = resolve_defaults(cfg)
        # shards > 1: the reference of the pipeline's --replicas (training/sharded.py); 1: the plain trainer.
        self.shards = int(shards)
        self.reporter = reporter or Reporter()
        self.run_dir = RunDir(self.cfg.out_dir)
        self.parts: RunParts | None = None
        self.runners: list[BlockRunner] = []
        self.step = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_val: EvalResult | None = None
        self.val_logged: int | None = None  # step of the last validation record in metrics.jsonl
        self.wall_s = 0.0           # training + validation wall time, accumulated over resumptions
        self.train_s = 0.0          # time inside train steps only (for samples/s)
        self.checkpoint_step: int | None = None
        self.lock: RunLock | None = None  # the run directory's, held from setup to the end of `run`
        # The "stopping after step S" notice is said at once, from the signal watcher's thread (or a handler
        # in the main thread): it names `_stop_after`, the step running or about to run, and the loop stops
        # after the step it named (`_stop_named`). Both are read and written under `_stop_lock` (re-entrant:
        # a handler may run inside the main thread's own critical section). It used to name self.step + 1
        # read at any moment: a signal between the step counter's increment and the loop's stop check was
        # announced for the next step while the loop stopped after the current one.
        self._stop_lock = threading.RLock()
        self._stop_after = 1
        self._stop_named: int | None = None
        self._test_decoded = False  # the test split was decoded once (at the first validation)

    # -- setup ---------------------------------------------------------------------------------------
    def setup(self, *, resume: bool, overwrite: bool = False) -> None:
        """Check the output directory, build everything, take the directory's lock, write (or check)
        config.json, load the checkpoint. A finished run asked to resume is RunFinished (nothing touched)."""
        # Cheap output-directory checks first (fail fast, nothing created), then device, data and decoupling;
        # the directory is only created once all of them are valid, so a bad config leaves nothing behind.
        self.run_dir.check(resume=resume, overwrite=overwrite)
        self.parts = parts = build_parts(self.cfg, progress=self.reporter.checking_images)
        self.lock = self.run_dir.prepare(resume=resume, overwrite=overwrite)
        self.cfg = parts.cfg
        self.runners = [BlockRunner(b, self.cfg, parts.device) for b in parts.blocks]
        resolved = parts.spec.to_json()
        if resume:
            check_resume("train", read_spec(self.run_dir).to_json(), resolved, str(self.run_dir.path))
            self._load(load_checkpoint(self.run_dir.last_checkpoint, num_blocks=len(self.runners)))
            self.run_dir.truncate_metrics(self.step)
            self.val_logged = max((int(r["step"]) for r in self.run_dir.read_metrics() if "val_top1_error" in r),
                                  default=None)
        else:
            self.run_dir.write_config(resolved)

    def _load(self, ck: dict) -> None:
        for runner, state in zip(self.runners, ck["blocks"]):
            runner.load_state_dict(state)
        set_rng_state(ck["rng"])
        self.step = self.checkpoint_step = int(ck["step"])
        self.best_val, self.best_step = ck.get("best_val"), ck.get("best_step")
        self.wall_s, self.train_s = float(ck.get("wall_s", 0.0)), float(ck.get("train_s", 0.0))

    # -- checkpoints and validation -----------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write checkpoints/last.pt atomically; refuses (and keeps the previous one) if a weight is NaN/inf."""
        for runner in self.runners:
            runner.check_finite()
            bad = runner.block.first_non_finite()
            if bad is not None:
                raise NonFiniteLossError(runner.block.index, len(self.runners), self.step, what=f"weight {bad!r}")
        save_checkpoint(self.run_dir.last_checkpoint, step=self.step, blocks=[r.state_dict() for r in self.runners],
                        extra={"best_val": self.best_val, "best_step": self.best_step,
                               "wall_s": self.wall_s, "train_s": self.train_s})
        self.checkpoint_step = self.step

    def validate(self) -> float | None:
        """Validation top-1 error; saves the weights to checkpoints/best.pt when it is the best so far."""
        self._decode_test_once()
        val = self.parts.bundle.val
        if val is None or len(val) == 0:
            return None
        self.last_val = res = eval_split(self.parts, val, self.runners)
        err = res.top1_error
        if self.val_logged != self.step:  # a resumed finished run re-validates its last step: logged once
            self.run_dir.log({"step": self.step, **eval_record(res, "val")})
            self.val_logged = self.step
        if self.best_val is None or err < self.best_val:
            self.best_val, self.best_step = err, self.step
            atomic_torch_save(self.run_dir.best_weights, {"step": self.step, "val_error": err,
                                                          "blocks": [b.state_dict() for b in self.parts.blocks]})
        self.reporter.validated(self.step, err, self.best_val)
        return err

    def _decode_test_once(self) -> None:
        """At the first validation, decode every test image of a data set that decodes files (ImageFolder, a
        user's): a file the header check passed but that does not decode is found now, not after training."""
        from sedona_runtime.data.feeder import decodes, eval_batches_raw

        test = self.parts.bundle.test
        if self._test_decoded or test is None or len(test) == 0 or not decodes(test):
            return
        with torch.random.fork_rng(devices=[]):  # a DataLoader draws its workers' seed: leave training's RNG be
            for _ in eval_batches_raw(test, self.cfg.eval_batch_size, data_workers(self.parts)):
                pass
        self._test_decoded = True

    # -- the loop -------------------------------------------------------------------------------------
    def train_steps(self, stream, schedule: Schedule, stop: StopRequest | None = None) -> None:
        """Walk `schedule.training()` (global steps self.step .. schedule.until-1, each followed by its validation
        and checkpoint, if any); return early after the step (and its events) during which `stop` was set."""
        cfg, k = self.cfg, len(self.runners)
        window = (self.train_s, self.step)  # throughput over train-step time only (validation excluded)
        losses = [math.nan] * k
        timings = [dict.fromkeys(("forward", "head", "backward", "optimizer"), 0.0) for _ in range(k)]
        from sedona_runtime.data.feeder import train_batches

        if schedule.start != self.step:
            raise ValueError(f"schedule starts at step {schedule.start}, the trainer is at {self.step}")
        # Raw batches (read ahead by worker processes when they pay), scaled, augmented with their own
        # draws and normalized on the first block's device: what the pipeline's block 1 does.
        batches = train_batches(stream, self.step, schedule.until, data_workers(self.parts))
        preprocess, device = stream.preprocess, self.runners[0].device
        for event in schedule.training():
            if event.kind != TRAIN:  # the step's validation, then its checkpoint
                t1 = time.perf_counter()
                if event.kind == VALIDATE:
                    self.validate()
                elif event.kind == CHECKPOINT:
                    self.save_checkpoint()
                self.wall_s += time.perf_counter() - t1
                continue
            with self._stop_lock:
                # A request whose notice is still to come names the step just done (_stop_after): stop after
                # it and its events. Then update: a notice said in between names the step about to run.
                if stop is not None and stop.is_set():
                    return
                self._stop_after = self.step + 1
                if self._stop_named is not None and self._stop_named <= self.step:
                    return
            t0 = time.perf_counter()
            raw = next(batches)
            x, y = preprocess(raw, device), raw.y
            lr = self.runners[0].lr
            if self.shards > 1:
                self._sharded_step(x, y, losses)
            for i, runner in enumerate(self.runners if self.shards == 1 else ()):
                res = runner.train_step(x, y)
                x = res.out
                for name, sec in res.timings.items():
                    timings[i][name] = timings[i].get(name, 0.0) + sec
            self.step += 1
            dt = time.perf_counter() - t0
            self.train_s += dt
            self.wall_s += dt
            if event.log:
                # Read without waiting (LazyRead): on CUDA the newest losses that reached the host; the
                # checkpoint's check_finite() waits and sees every step.
                for runner in self.runners:
                    runner.check_finite(wait=False)
                losses = [runner.last_loss() for runner in self.runners]
                rate = (self.step - window[1]) * cfg.batch_size / max(self.train_s - window[0], 1e-9)
                window = (self.train_s, self.step)
                self.run_dir.log({"step": self.step, "loss": list(losses), "lr": lr, "samples_per_s": rate,
                                  "time": {n: [t[n] for t in timings] for n in timings[0]}})
                timings = [dict.fromkeys(timings[0], 0.0) for _ in range(k)]
                eta = (cfg.steps - self.step) * cfg.batch_size / max(rate, 1e-9)
                self.reporter.step(Progress(self.step, cfg.steps, list(losses), lr, rate, self.wall_s, eta))

    def _sharded_step(self, x, y, losses: list) -> None:
        """Every block on the batch's R shards (training/sharded.py); losses[i]: block i's shard-0 loss."""
        from sedona_runtime.training.sharded import sharded_step, split_shards

        xs, ys = split_shards(x, y, self.shards)
        for i, runner in enumerate(self.runners):
            xs, losses[i] = sharded_step(runner, xs, ys)

    def run(self, *, resume: bool = False, overwrite: bool = False, stop_at: int | None = None) -> dict:
        """Train (or resume) to `cfg.steps` (or stop after global step `stop_at`), then evaluate; the summary.

        The run directory's lock is held throughout (RunLocked when another live run has it). SIGINT or
        SIGTERM stops after the current step with a checkpoint of it (Interrupted, exit code 128 + signal);
        an OS error on a write is one WriteError line saying which checkpoint was kept.
        """
        stop: StopRequest | None = None
        try:
            self.setup(resume=resume, overwrite=overwrite)
            parts = self.parts
            self.reporter.start(RunInfo([b.name for b in parts.blocks], self.cfg.steps, self.step, str(parts.device),
                                        [network_line(self.cfg, parts.bundle.input_shape)]
                                        + [n for n in [getattr(parts.bundle, "note", ""), parts.decoupling.source] if n]))
            schedule = Schedule(self.cfg, start=self.step, until=stop_at)
            self._stop_after = min(self.step + 1, schedule.until)
            with deferred_stop(self._say_stopping) as stop:
                try:
                    self.train_steps(make_stream(parts), schedule, stop)
                except NonFiniteLossError as exc:
                    raise exc.with_note(self._kept("last good checkpoint", how="")) from None
                if stop.is_set():
                    for _ in schedule.on_stop(self.step, self.checkpoint_step):
                        self.save_checkpoint()
                    raise Interrupted(f"interrupted ({stop.name}) after step {self.step} of {self.cfg.steps}: "
                                      f"checkpoint of step {self.step} saved in {self.run_dir.last_checkpoint}; "
                                      f"continue with --resume --out {self.run_dir.path}", exit_code=stop.exit_code)
            summary: dict = {"stopped_at": self.step}  # stopped early (stop_at): a resumable checkpoint is left
            for event in schedule.ending():  # the final validation, the last checkpoint, the test round
                if event.kind == VALIDATE:
                    t1 = time.perf_counter()
                    self.validate()
                    self.wall_s += time.perf_counter() - t1
                elif event.kind == CHECKPOINT:
                    self.save_checkpoint()
                elif event.kind == TEST:
                    summary = self.summarize()
                    self.run_dir.write_summary(summary)
                    self.reporter.finish(summary)
            return summary
        except KeyboardInterrupt:
            if stop is None:
                raise Interrupted("interrupted before training " + ("resumed; the run's files are unchanged" if resume
                                                                    else "started; nothing to resume")) from None
            if self.step >= self.cfg.steps:
                when = "interrupted during the final evaluation"
            else:
                again = " again" if stop.is_set() else ""
                when = f"interrupted{again}: stopped at once during step {self.step + 1}, without saving it"
            raise Interrupted(f"{when}; {self._kept('checkpoint')}", exit_code=stop.exit_code) from None
        except WriteError as exc:
            how = f"{'free some space' if _no_space(exc) else 'fix the cause'} and continue with --resume"
            raise SedonaError(f"{exc}; training stopped at step {self.step}, {self._kept('checkpoint', how)}") from None
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            self.reporter.close()
            self.run_dir.close()

    def _say_stopping(self, request: StopRequest) -> None:
        """The notice of a stop request (from the signal watcher's thread): the step the loop stops after."""
        with self._stop_lock:
            step = self._stop_named = self._stop_after
        self.reporter.stopping(step, request.name)

    def _kept(self, what: str, how: str = "continue with --resume") -> str:
        """Which checkpoint survives a failure, and how to continue from it."""
        if self.checkpoint_step is None:
            return "no checkpoint had been written"
        return f"{what} {self.run_dir.last_checkpoint} (step {self.checkpoint_step}) kept" + (f"; {how}" if how else "")

    def summarize(self) -> dict:
        """Test errors of the final weights (classifier and aux ensemble), best val, time, memory."""
        test = eval_split(self.parts, self.parts.bundle.test, self.runners)
        cfg = self.cfg
        done = cfg.steps
        return {
            "steps": done,
            "K": len(self.runners),
            "decoupling": self.parts.decoupling.to_json()["blocks"],
            "test": dataclasses.asdict(test),
            "test_accuracy": 1.0 - test.top1_error,
            "val": dataclasses.asdict(self.last_val) if self.last_val is not None else None,
            "best_val_error": self.best_val,
            "best_val_step": self.best_step,
            "wall_time_s": self.wall_s,
            "train_time_s": self.train_s,
            "samples_per_s": done * cfg.batch_size / max(self.train_s, 1e-9),
            "peak_memory_bytes": [r.peak_memory for r in self.runners],
            "peak_memory_kind": memory_kind(self.parts.device),
            "processes": 1,  # every block in this process: on CPU they share one RSS
            "device": str(self.parts.device),
        }


def _no_space(exc: WriteError) -> bool:
    cause = os_error_in(exc)
    return cause is not None and cause.errno in (errno.ENOSPC, errno.EDQUOT)


def train(cfg: TrainConfig, *, reporter: Reporter | None = None, resume: bool = False, overwrite: bool = False,
          stop_at: int | None = None, shards: int = 1) -> dict:
    """Train `cfg` in one process and return the summary (also written to <out_dir>/summary.json).

    `shards` > 1 splits every batch into that many shards, each block averaging their gradients: the
    single-process reference of the pipeline's `--replicas` (training/sharded.py).
    """
    return GreedyTrainer(cfg, reporter, shards).run(resume=resume, overwrite=overwrite, stop_at=stop_at)
