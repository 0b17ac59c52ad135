"""SearchRunner: pretraining, the bilevel loop, checkpoints and resume, metrics and final outputs."""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from sedona_runtime.data import BatchStream, build_data, eval_batches
from sedona_runtime.heads.registry import head_width_for
from sedona_runtime.models.registry import build_model
from sedona_runtime.search import second_order
from sedona_runtime.search.bilevel import (Bilevel, InnerSettings, cosine_lr, inner_optimizer, momentum_buffers,
                                           weight_step)
from sedona_runtime.search.checkpoint import CHECKPOINT_VERSION, MemoryFiles, load_checkpoint
from sedona_runtime.search.config import SearchConfig, check_blocks
from sedona_runtime.search.export import write_results
from sedona_runtime.search.figure import plot_alpha_beta
from sedona_runtime.search.memory import WeightMemory, WeightSet
from sedona_runtime.search.memory_model import MemoryPlan, plan_search_memory
from sedona_runtime.search.relaxation import RelaxedNet, relax_model
from sedona_runtime.search.resume import check_resumable
from sedona_runtime.search.sharding import Sharding
from sedona_runtime.training.greedy import resolve_device
from sedona_runtime.training.run_dir import RunDir
from sedona_runtime.utils.config import to_dict
from sedona_runtime.utils.interrupt import deferred_stop
from sedona_runtime.utils.io import atomic_torch_save
from sedona_runtime.utils.seed import derive_seed, make_generator, seed_everything

log = logging.getLogger(__name__)
CHECK_EVERY = 10  # steps between the ranks' checksum of (alpha, beta), Adam state and weights (R processes)


class SearchStopped(KeyboardInterrupt):
    """The search stopped on Ctrl-C or SIGTERM after checkpointing its last step; `exit_code` is 128 + the
    signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, exit_code: int = 130) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class Reporter(Protocol):
    """Where progress goes (the CLI renders it with rich; tests pass None)."""

    def event(self, record: dict) -> None: ...


@dataclass
class SearchResult:
    alpha: torch.Tensor
    beta: torch.Tensor
    summary: dict


class SearchRunner:
    """Runs one search into `out_dir` (RunDir layout); `resume` continues from checkpoints/last.pt."""

    def __init__(self, cfg: SearchConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 reporter: Reporter | None = None, sharding: Sharding | None = None) -> None:
        cfg.validate()
        self.num_layers, self.blocks = check_blocks(cfg)  # bad K is refused before the run directory exists
        self.cfg, self.reporter, self.run_dir = cfg, reporter, RunDir(out_dir)
        # One shard per rank under R processes (search/distributed.py); rank 0 alone owns the run directory.
        self.sharding = sharding or Sharding(cfg.shards)
        writes = self.sharding.writes
        if writes:
            self.run_dir.check(resume=resume, overwrite=overwrite)  # created (and locked) once all else is valid
        if resume and writes:
            check_resumable(self.run_dir.read_config(), to_dict(cfg), str(self.run_dir.path))
        self.files = MemoryFiles(self.run_dir.checkpoints / "memory")
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.data = build_data(cfg.data)
        cfg.model.num_classes, cfg.model.stem = self.data.num_classes, self.data.stem  # the data decides
        cfg.model.in_channels = self.data.input_shape[0]
        model = build_model(cfg.model)
        self.arch = cfg.model.arch
        width = cfg.head_width or head_width_for(self.data.stem)
        self.net: RelaxedNet = relax_model(model, cfg.head_pool, self.data.input_shape, self.data.num_classes,
                                           width, cfg.label_smoothing).to(self.device)
        second_order.convert(self.net.heads)  # inert until switched on (cfg.fast_heads) for a training step
        n, m = model.num_layers - 1, len(cfg.head_pool)
        self.alpha = torch.zeros(n, 2, device=self.device, requires_grad=True)  # Algorithm 1: start at 0
        self.beta = torch.zeros(n, m, device=self.device, requires_grad=True)
        self.inner = InnerSettings(cfg.momentum, cfg.weight_decay)
        # Refused here, before the run directory is touched, if the outer step cannot fit the device. The stored
        # graph holds every shard this process computes, the recomputed sweep one shard at a time.
        self.memory_plan = plan_search_memory(
            self.net, self.device, self.data.input_shape, cfg.data.batch_size,
            min(cfg.val_batch_size, len(self.data.val)), cfg.inner_steps, cfg.memory_size,
            requested=cfg.recompute, fast=cfg.fast_heads, shards=self.sharding.shards,
            processes=self.sharding.rank is not None)
        log.info("%s", self.memory_plan.note)
        self.bilevel = Bilevel(self.net, self.alpha, self.beta, inner=self.inner, outer_lr=cfg.outer_lr,
                               outer_weight_decay=cfg.outer_weight_decay,
                               outer_betas=(cfg.outer_beta1, cfg.outer_beta2), fast=cfg.fast_heads,
                               sharding=self.sharding, recompute=self.memory_plan.recompute)
        # "- weight sampling": a memory of one always hands back the newest weights.
        self.memory = WeightMemory(cfg.memory_size if cfg.weight_sampling else 1)
        self.sampler = make_generator("search-memory", cfg.seed)
        self.pre_opt = inner_optimizer(self.net, cfg.lr, self.inner)
        self.train = BatchStream(self.data.train, cfg.data.batch_size, cfg.data.seed, self.data.augment)
        val = self.data.val
        self.val = BatchStream(val, min(cfg.val_batch_size, len(val)), derive_seed("search-val", cfg.data.seed))
        self.pretrain_steps = cfg.pretrain_steps if cfg.pretrain else 0
        self.total = self.pretrain_steps + cfg.search_steps
        self.step = 0  # global steps done: pretraining first, then outer steps
        self.timing = {"pretrain_s": 0.0, "search_s": 0.0}
        self.peak_rss = 0
        self.last_val: dict[str, float] = {}
        self.lock = (self.run_dir.prepare(resume=resume, overwrite=overwrite) if writes  # held until run() ends
                     else contextlib.nullcontext())
        if not resume and writes:
            self.files.clear()  # a replaced run's entries (--overwrite), now that the directory is ours
        if resume:
            self._load()
        else:
            if writes:
                self.run_dir.write_config(to_dict(cfg))
            if not self.pretrain_steps:  # "- pretraining": the memory starts from the initial weights
                self.memory.push(WeightSet(self.net.state_dict(), {}, 0))

    # -- the two phases -------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> SearchResult | None:
        """`_run` while owning the run directory (its lock is released when this returns or raises)."""
        with self.lock:
            return self._run(stop_after)

    def _run(self, stop_after: int | None = None) -> SearchResult | None:
        """Run to the end (or until global step `stop_after`, checkpointing there); None if stopped.

        Ctrl-C or SIGTERM reports a "stopping" event at once (even in the middle of a long step), finishes
        the current step, checkpoints, then raises SearchStopped (a KeyboardInterrupt), so that a resumed
        search continues exactly there (a second signal interrupts at once).
        """
        end = self.total if stop_after is None else min(self.total, stop_after)
        saved_at = None

        def stopping() -> None:
            self._emit({"kind": "stopping", "step": self.step, "total": self.total,
                        "checkpoint": str(self.run_dir.last_checkpoint)})

        with deferred_stop(lambda request: stopping()) as interrupted:
            # Announced once Ctrl-C is deferred: from here on it stops at a step boundary.
            self._emit({"kind": "start", "step": self.step, "total": self.total, "arch": self.arch,
                        "num_layers": self.num_layers, "device": str(self.device), "data": self.data.note,
                        "memory": self.memory_plan.note, "width": self.cfg.model.width,
                        "pretrain": self.pretrain_steps})
            while self.step < end:
                if self.step < self.pretrain_steps:
                    self._pretrain_step()
                else:
                    self._outer_step()
                self._track_memory()
                every = self.cfg.checkpoint_every
                if self.step % CHECK_EVERY == 0 or self.step == end:
                    self._check_ranks()
                if self.sharding.any(interrupted.is_set()):  # every rank stops at the same step
                    self._save()
                    self._emit({"kind": "stopped", "step": self.step, "total": self.total,
                                "checkpoint": str(self.run_dir.last_checkpoint)})
                    raise SearchStopped(interrupted.exit_code)
                if (every and self.step % every == 0) or self.step == self.pretrain_steps:
                    self._save()
                    saved_at = self.step
        if saved_at != self.step:  # where it stopped, or the finished state (unless just written)
            self._save()
        if self.step < self.total:
            return None
        return self._finish()

    def _pretrain_step(self) -> None:
        t0, i = time.perf_counter(), self.step
        lr = cosine_lr(i, self.pretrain_steps, self.cfg.lr, self.cfg.lr_min)
        x, y = self._to_device(self.train.batch(i))
        with second_order.fast_path(self.net, self.cfg.fast_heads):
            loss = weight_step(self.net, self.alpha, self.beta, (x, y), lr, self.inner, opt=self.pre_opt,
                               sharding=self.sharding)
        self.step += 1
        if self.step % self.cfg.eval_every == 0 or self.step == self.pretrain_steps:
            val_loss, val_err = self.evaluate()
            weights = WeightSet(self.net.state_dict(), momentum_buffers(self.pre_opt, self.net), self.step)
            kept = self.memory.offer(weights, 1.0 - val_err)
            self.last_val = {"val_loss": val_loss, "val_error": val_err}
            self._log({"phase": "pretrain", "step": self.step, "lr": lr, "train_loss": loss,
                       "val_loss": val_loss, "val_error": val_err, "kept": kept, "memory": len(self.memory)})
        self.timing["pretrain_s"] += time.perf_counter() - t0
        self._emit({"kind": "progress", "phase": "pretrain", "step": self.step, "total": self.total,
                    "train_loss": loss, **self.last_val, "sec_per_step": self.timing["pretrain_s"] / self.step,
                    "eta_s": self._eta()})

    def _outer_step(self) -> None:
        t0, s, T = time.perf_counter(), self.step - self.pretrain_steps, self.cfg.inner_steps
        index = self.memory.sample(self.sampler) if self.cfg.weight_sampling else len(self.memory) - 1
        weights = self.memory.get(index)
        # The release's rule: the pretraining schedule at the sampled weights' own step count.
        lr = cosine_lr(weights.steps, self.cfg.pretrain_steps, self.cfg.lr, self.cfg.lr_min)
        first = self.pretrain_steps + s * T  # the training stream continues after pretraining
        batches = [self._to_device(self.train.batch(first + t)) for t in range(T)]
        res = self.bilevel.outer_step(weights, batches, self._to_device(self.val.batch(s)), lr)
        self.memory.push(res.weights)
        self.step += 1
        dt = time.perf_counter() - t0
        self.timing["search_s"] += dt
        self.last_val = {"val_loss": res.val_loss, "val_error": res.val_error}
        a_local = torch.softmax(self.alpha.detach(), 1)[:, 0]
        self._log({"phase": "search", "step": self.step, "outer_step": s + 1, "lr": lr,
                   "weight_steps": weights.steps, "train_loss": res.train_loss, "val_loss": res.val_loss,
                   "val_error": res.val_error, "sample": index, "sec": dt,
                   "alpha_local": [round(v, 6) for v in a_local.tolist()]})
        self._emit({"kind": "progress", "phase": "search", "step": self.step, "total": self.total,
                    "train_loss": res.train_loss, **self.last_val,
                    "sec_per_step": self.timing["search_s"] / (s + 1), "eta_s": self._eta()})

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Final classifier's (loss, error) on the validation split (eval mode; `eval_batches` cap)."""
        self.net.eval()
        sums: dict[int, list[float]] = {}  # per shard, summed in shard order: the same on 1 or R processes
        try:
            for i, batch in enumerate(eval_batches(self.data.val, self.cfg.data.batch_size)):
                if self.cfg.eval_batches is not None and i >= self.cfg.eval_batches:
                    break
                for r, (x, y) in self.sharding.eval_shards(self._to_device(batch)):
                    logits = self.net.logits(x)
                    acc = sums.setdefault(r, [0.0, 0.0, 0.0])
                    acc[0] += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
                    acc[1] += float((logits.argmax(1) != y).sum())
                    acc[2] += y.numel()
        finally:
            self.net.train()
        loss, wrong, count = self.sharding.values(*(sum(a[k] for a in sums.values()) for k in range(3)))
        return loss / max(count, 1), wrong / max(count, 1)

    # -- output -------------------------------------------------------------------------------
    def _finish(self) -> SearchResult:
        cfg, out = self.cfg, self.run_dir.path
        if not self.sharding.writes:  # ranks > 0: rank 0 writes the results
            return SearchResult(self.alpha.detach().clone(), self.beta.detach().clone(), {})
        source = (f"SEDONA search: {self.arch} on {cfg.data.dataset}, {self.pretrain_steps} pretraining + "
                  f"{cfg.search_steps} outer steps (T = {cfg.inner_steps}), seed {cfg.seed}")
        files = write_results(out, self.alpha, self.beta, cfg.head_pool, self.arch, self.num_layers, self.blocks,
                              random_alpha=cfg.random_alpha, random_beta=cfg.random_beta, seed=cfg.seed,
                              source=source)
        figure = plot_alpha_beta(self.alpha, self.beta, cfg.head_pool, out / "alpha_beta.png",
                                 title=f"{self.arch}: softmax(alpha)_0 per layer, bar label = argmax beta (1-based)")
        s_steps = cfg.search_steps
        summary = {
            "arch": self.arch, "num_layers": self.num_layers, "device": str(self.device),
            "pretrain_steps": self.pretrain_steps, "search_steps": s_steps, "inner_steps": cfg.inner_steps,
            "sec_per_outer_step": self.timing["search_s"] / s_steps,
            "sec_per_pretrain_step": self.timing["pretrain_s"] / self.pretrain_steps if self.pretrain_steps else None,
            "peak_rss_mib": self.peak_rss / 2**20,
            "recompute": self.memory_plan.recompute,
            "predicted_peak_mib": _mib(self.memory_plan),
            "cuda_max_allocated_mib": (torch.cuda.max_memory_allocated(self.device) / 2**20
                                       if self.device.type == "cuda" else None),
            "final_val_loss": self.last_val.get("val_loss"), "final_val_error": self.last_val.get("val_error"),
            "decouplings": files, "figure": str(figure) if figure else None,
            "alpha_local": torch.softmax(self.alpha.detach(), 1)[:, 0].tolist(),
        }
        self.run_dir.write_summary(summary)
        self._emit({"kind": "finish", **summary})
        return SearchResult(self.alpha.detach().clone(), self.beta.detach().clone(), summary)

    def _log(self, record: dict) -> None:
        if self.sharding.writes:
            self.run_dir.log(record)

    def _check_ranks(self) -> None:
        """Stop with a clear error if the ranks' (alpha, beta), Adam state or weights ever differ."""
        if self.sharding.rank is None:
            return
        named = {"alpha": self.alpha.detach(), "beta": self.beta.detach(),
                 **{f"adam.{i}.{k}": v for i, st in self.bilevel.outer.state.items() for k, v in st.items()
                    if torch.is_tensor(v)},
                 **{f"net.{k}": v for k, v in self.net.state_dict().items()}}
        self.sharding.check_same(named, self.step)

    def _emit(self, record: dict) -> None:
        if self.reporter is not None:
            self.reporter.event(record)

    def _eta(self) -> float:
        pre_left = max(0, self.pretrain_steps - self.step)
        out_left = self.total - max(self.step, self.pretrain_steps)
        done_pre = min(self.step, self.pretrain_steps)
        done_out = self.step - done_pre
        per_pre = self.timing["pretrain_s"] / done_pre if done_pre else 0.0
        # Before the first outer step, guess (T + 2) pretraining steps' worth per outer step, times 3 for
        # the second-order work.
        per_out = (self.timing["search_s"] / done_out if done_out else per_pre * 3 * (self.cfg.inner_steps + 2))
        return pre_left * per_pre + out_left * per_out

    def _to_device(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _track_memory(self) -> None:
        try:
            import psutil

            self.peak_rss = max(self.peak_rss, psutil.Process().memory_info().rss)
        except ImportError:  # psutil is a dependency; without it only the peak-RSS figure is lost
            pass

    # -- checkpoints -----------------------------------------------------------------------------
    def _save(self) -> None:
        """checkpoints/last.pt plus one file per memory entry, each written once (MemoryFiles)."""
        if not self.sharding.writes:
            return
        self.files.write_new(self.memory)
        atomic_torch_save(self.run_dir.last_checkpoint, {
            "version": CHECKPOINT_VERSION, "step": self.step, "net": self.net.state_dict(),
            "pretrain_opt": self.pre_opt.state_dict(), "memory": self.memory.index(),
            "bilevel": self.bilevel.state_dict(), "sampler": self.sampler.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "timing": dict(self.timing), "peak_rss": self.peak_rss, "last_val": dict(self.last_val),
        })
        self.files.remove_unreferenced(self.memory)  # only once the new last.pt no longer names them

    def _load(self) -> None:
        ck = load_checkpoint(self.run_dir.last_checkpoint)
        self.step = int(ck["step"])
        self.net.load_state_dict(ck["net"])
        self.pre_opt.load_state_dict(ck["pretrain_opt"])
        self.memory.load_index(ck["memory"], self.files.read)
        if self.sharding.writes:  # entries written after the checkpoint are recomputed
            self.files.remove_unreferenced(self.memory)
        self.bilevel.load_state_dict(ck["bilevel"])
        self.sampler.set_state(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        if ck["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.timing, self.peak_rss, self.last_val = ck["timing"], ck["peak_rss"], ck["last_val"]
        if self.sharding.writes:
            self.run_dir.truncate_metrics(self.step)  # steps after the checkpoint are recomputed
        log.info("resumed the search at step %d of %d", self.step, self.total)


def _mib(plan: MemoryPlan) -> float | None:
    """The predicted peak of the chosen way, MiB (memory_model)."""
    est = (plan.recomputed if plan.recompute else plan.stored) or plan.bound
    return est.total / 2**20 if est is not None else None
