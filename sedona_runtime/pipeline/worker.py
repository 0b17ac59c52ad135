"""One pipeline stage: a process that trains one block on whatever its input channel delivers."""
from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.affinity import pin
from sedona_runtime.pipeline.channel import Aborted, ChannelError, EndOfStream, PeerError
from sedona_runtime.pipeline.config import PipelineConfig
from sedona_runtime.pipeline.messages import Batch, Marker, Report
from sedona_runtime.pipeline.metrics import BlockMeter
from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel, _short
from sedona_runtime.pipeline.rpc_runtime import Watchdog, block_name, coordinator_name, start_rpc, stop_rpc
from sedona_runtime.pipeline.stop import STOP
from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)

INPUT_QUEUE = "input"     # every block owns one input queue under this name
_RELEASE = threading.Event()


def _rpc_release() -> None:
    """The coordinator has everything it needs from this block: it may leave the group."""
    _RELEASE.set()


@dataclass
class Placement:
    """Where one process runs: its RPC rank and name, device, CPU cores and torch threads."""

    rank: int
    device: str = "cpu"
    cores: list[int] | None = None
    threads: int = 0
    device_maps: dict | None = None   # TensorPipe device map to the next block, when both are GPUs


def _cpu_state(module_state: dict) -> dict:
    # Cloned: the optimizer updates the weights in place while TensorPipe may still be sending them.
    return {k: v.detach().to("cpu", copy=True) for k, v in module_state.items()}


class Stage:
    """The loop of block `index`: get (step, x, y) -> train_step -> put (step, out, y) to the next block."""

    def __init__(self, pcfg: PipelineConfig, index: int, world_size: int, init_method: str, place: Placement) -> None:
        self.pcfg, self.index, self.world_size = pcfg, index, world_size
        self.init_method, self.place = init_method, place
        self.K = pcfg.blocks
        self.is_last = index == self.K
        self.timeout = pcfg.timeout

    def prepare(self) -> None:
        """Pin this process and own the input queue (before joining, so that no put can miss it)."""
        pin(torch.device(self.place.device), self.place.cores, self.place.threads or self.pcfg.threads)
        self.inbox_q = RpcRecvChannel(INPUT_QUEUE, self.pcfg.queue_depth)

    def connect(self) -> None:
        start_rpc(block_name(self.index), self.place.rank, self.world_size, self.init_method,
                  device=torch.device(self.place.device), device_maps=self.place.device_maps,
                  timeout=self.timeout)
        to_cpu = not self.place.device_maps
        self.out = None if self.is_last else RpcSendChannel(block_name(self.index + 1), INPUT_QUEUE,
                                                            self.pcfg.window, to_cpu=to_cpu)
        from sedona_runtime.pipeline.coordinator import INBOX, _rpc_setup  # the coordinator owns these

        self.reports = RpcSendChannel(coordinator_name(), INBOX, window=4)
        self.watchdog = Watchdog([coordinator_name()], lambda peer, why: STOP.set(why),
                                 self.pcfg.heartbeat, self.pcfg.heartbeat_timeout).start()
        self.setup = rpc.rpc_sync(coordinator_name(), _rpc_setup, timeout=self.timeout)

    def build(self) -> None:
        """This block, its runner and (on resume) its state, from the coordinator's resolved config."""
        from sedona_runtime.training.block import BlockRunner, memory_kind
        from sedona_runtime.training.checkpoint import set_rng_state
        from sedona_runtime.training.run_dir import RunDir

        cfg = self.setup["train"]
        # Every block builds the whole model under the run's seed, like the single-process trainer,
        # and keeps its own block: identical initial weights with nothing to ship.
        blocks = build_model_blocks(cfg, self.setup["input_shape"])
        self.runner = BlockRunner(blocks[self.index - 1], cfg, torch.device(self.place.device))
        self.memory_kind = memory_kind(self.place.device)
        self.checkpoints = RunDir(cfg.out_dir).checkpoints
        self.log_every = max(1, cfg.log_interval)
        step = self.setup["resume_step"]
        if step is not None:
            payload = ckpt.load_block(self.checkpoints, int(step), self.index)
            self.runner.load_state_dict(payload["blocks"][0])
            set_rng_state(payload["rng"])

    def report(self, kind: str, step: int, data=None, **extra) -> None:
        self.reports.put(Report(self.index, kind, step, data, extra), self.timeout)

    def loop(self) -> None:
        meter = BlockMeter(self.runner.step)
        meter.stats.memory_kind = self.memory_kind
        log_every = self.log_every
        spans: list[tuple[int, float, float]] | None = [] if self.pcfg.timeline else None
        while True:
            t0 = time.perf_counter()
            depth = self.inbox_q.qsize()
            try:
                item = self.inbox_q.get(self.timeout)
            except EndOfStream:
                break
            meter.waited_in(time.perf_counter() - t0, depth)
            if isinstance(item, Batch):
                t1, w1 = time.perf_counter(), time.time()
                res = self.runner.train_step(item.x, item.y)
                busy = time.perf_counter() - t1
                meter.trained(busy, res.loss, int(item.y.shape[0]), self.runner.step, res.timings)
                if spans is not None:  # wall clock, so that spans of different processes line up
                    spans.append((self.runner.step, w1, w1 + busy))
                if self.out is not None:
                    t2 = time.perf_counter()
                    self.out.put(Batch(item.step, res.out, item.y), self.timeout)
                    put_s = time.perf_counter() - t2
                    meter.waited_out(self.out.last_wait_s, max(0.0, put_s - self.out.last_wait_s))
                if self.runner.step % log_every == 0:
                    self.report("metrics", self.runner.step, meter.report(self.runner.peak_memory).to_dict())
            elif isinstance(item, Marker):
                self.on_marker(item)
        if self.runner.step % log_every:  # the last interval, unless it was just reported
            self.report("metrics", self.runner.step, meter.report(self.runner.peak_memory).to_dict())
        if self.out is not None:
            self.out.close(self.timeout)
        self.report("final", self.runner.step, _cpu_state(self.runner.block.state_dict()),
                    **({"timeline": spans} if spans is not None else {}))
        self.reports.flush(self.timeout)

    def on_marker(self, marker: Marker) -> None:
        if marker.step != self.runner.step:  # the markers travel in order with the batches
            raise RuntimeError(f"marker for step {marker.step} arrived at step {self.runner.step}")
        if marker.kind == "checkpoint":
            bad = self.runner.block.first_non_finite()
            if bad is not None:
                raise RuntimeError(f"weight {bad!r} is not finite at step {marker.step}; checkpoint refused")
            ckpt.save_block(self.checkpoints, marker.step, self.index, self.runner.state_dict())
            self.report("saved", marker.step)
        elif marker.kind == "snapshot":
            self.report("snapshot", marker.step, _cpu_state(self.runner.block.state_dict()))
        if self.out is not None:
            self.out.put(marker, self.timeout)

    def run(self) -> int:
        """Set up, train until end-of-stream, wait to be released; 0 on success, 1 after a failure."""
        connected = False
        try:
            self.prepare()
            self.connect()
            connected = True
            self.build()
            self.loop()
            STOP.wait_for(_RELEASE.is_set, self.timeout, "the coordinator to release this block")
            self.watchdog.stop()
            stop_rpc(graceful=True, timeout=30.0)
            return 0
        except (Aborted, KeyboardInterrupt):
            return self._fail(None, connected)  # told to stop: whoever stopped us reports why
        except PeerError as exc:
            return self._fail(("upstream", exc.origin, exc.message), connected)
        except ChannelError as exc:
            return self._fail(("error", f"{block_name(self.index)}:channel", str(exc)), connected)
        except Exception as exc:  # a bug or bad data in this block: name it (bugs with their traceback)
            if not isinstance(exc, SedonaError):
                log.error("%s failed:\n%s", block_name(self.index), traceback.format_exc())
            return self._fail(("error", block_name(self.index), f"{type(exc).__name__}: {_short(exc)}"), connected)

    def _fail(self, why: tuple[str, str, str] | None, connected: bool) -> int:
        if connected:
            self.watchdog.stop()
            if why is not None:
                kind, origin, message = why
                if kind == "error":
                    try:
                        self.reports.fail(origin, message)
                    except Exception:
                        pass
                if self.out is not None:
                    self.out.fail(origin, message)
                time.sleep(0.2)  # let the best-effort error messages leave before the agent stops
            stop_rpc(graceful=False, timeout=3.0)
        return 1


def build_model_blocks(cfg, input_shape: tuple[int, int, int]) -> list:
    """All K blocks under the run's seed, built as training.greedy.build_parts builds them after the data.

    Blocks do not load the data set: the coordinator already resolved the model's classes, channels
    and stem from it. The exactness test guards that this stays in step with build_parts.
    """
    from sedona_runtime.decoupling import resolve_decoupling
    from sedona_runtime.heads import head_width_for
    from sedona_runtime.models import build_model
    from sedona_runtime.training.block import build_blocks, head_spec_fn

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    dec = resolve_decoupling(cfg.decoupling, cfg.model.arch, model.num_layers, allow_retarget=cfg.retarget)
    spec_fn = head_spec_fn(model, tuple(input_shape), cfg.model.num_classes, head_width_for(cfg.model.stem))
    return build_blocks(model, dec, spec_fn)


def run_stage(pcfg: PipelineConfig, index: int, world_size: int, init_method: str, place: Placement) -> int:
    """Entry of a block process (self-launched or started by torchrun)."""
    # Ctrl-C in a terminal reaches every process of the group: a block stops quietly and lets the
    # coordinator, which got the same signal, report it.
    signal.signal(signal.SIGINT, lambda *_: STOP.set("interrupted"))
    return Stage(pcfg, index, world_size, init_method, place).run()
