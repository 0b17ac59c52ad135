"""One pipeline stage: a process that trains one block on whatever its input channel delivers."""
from __future__ import annotations

import logging
import signal
import socket
import time
import traceback
from pathlib import Path

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.data.preprocess import RawBatch
from sedona_runtime.pipeline import checkpoints as ckpt
from sedona_runtime.pipeline.affinity import pin
from sedona_runtime.pipeline.channel import Aborted, ChannelError, ChannelTimeout, EndOfStream, PeerError
from sedona_runtime.pipeline.config import PipelineConfig, check_agrees
from sedona_runtime.pipeline.messages import Batch, EvalBatch, Marker, Report
from sedona_runtime.pipeline.metrics import BlockMeter
from sedona_runtime.pipeline.placement import Placement
from sedona_runtime.pipeline.protocol import COORDINATOR, INBOX, STATE, block_name, rpc_setup, short
from sedona_runtime.pipeline.grad_sync import GradSync
from sedona_runtime.pipeline.replicas import layout_of, replica_group
from sedona_runtime.pipeline.rendezvous import Meeting, init_method_for, open_store, use_interface
from sedona_runtime.pipeline.rpc_channel import RpcSendChannel
from sedona_runtime.pipeline.rpc_runtime import Watchdog, start_rpc, stop_rpc
from sedona_runtime.pipeline.torchrun_error import record_for_torchrun, under_torchrun
from sedona_runtime.pipeline.stop import STOP
from sedona_runtime.pipeline.transport import Transport
from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)


class Stage:
    """The loop of block `index`: get (step, x, y) -> train_step -> put (step, out, y) to the next block.

    `rank` is this process's rank; with R replicas per block (replicas.py) it runs replica `replica` of
    block `index`: it trains on its shard, averages gradients with the block's other replicas, and only
    replica 0 writes (checkpoints, best-weights candidates), evaluates and reports metrics.
    """

    def __init__(self, pcfg: PipelineConfig, rank: int, world_size: int, meeting: Meeting, place: Placement) -> None:
        self.layout = layout_of(pcfg)
        self.rank = rank
        self.index, self.replica = self.layout.block_of(rank)
        self.name, self.label = self.layout.name(rank), self.layout.label(rank)
        self.writes = self.replica == 0
        self.pcfg, self.world_size = pcfg, world_size
        self.meeting, self.place = meeting, place
        self.K = pcfg.blocks
        self.is_last = self.index == self.K
        self.timeout = pcfg.timeout
        self.device = torch.device(place.device)
        maps = self.device.type == "cuda" and pcfg.device_maps and (place.next_device or "").startswith("cuda")
        nxt = self.layout.next_ranks(rank)
        self.device_maps = ({self.layout.name(nxt[0]): {place.device: place.next_device}} if maps and nxt
                            else None)
        self.transport = Transport(pcfg.transport, rank, self.K, depth=pcfg.queue_depth, window=pcfg.window,
                                   timeout=pcfg.timeout, device=place.device, device_maps=bool(maps),
                                   layout=self.layout)

    def prepare(self) -> None:
        """Pin this process and own the input queue (before joining, so that no put can miss it)."""
        use_interface(self.meeting.iface)
        pin(self.device, self.place.cores, self.place.threads or self.pcfg.threads)
        STATE.device = self.device
        self.transport.before_join()

    def connect(self) -> None:
        """Join the group, register with the coordinator, get the run's setup, open the activation channels."""
        start = self.pcfg.start_timeout
        self.store = open_store(self.meeting, self.rank, self.world_size, start)
        start_rpc(self.name, self.rank, self.world_size, init_method_for(self.store),
                  device=self.device, device_maps=self.device_maps, timeout=start)
        self.reports = RpcSendChannel(COORDINATOR, INBOX, window=4)
        self.watchdog = Watchdog([COORDINATOR], lambda peer, why: STOP.set(why),
                                 self.pcfg.heartbeat, self.pcfg.heartbeat_timeout).start()
        info = {"host": socket.gethostname(), "device": str(self.device), "cores": self.place.cores}
        self.setup = rpc.rpc_sync(COORDINATOR, rpc_setup, args=(self.rank, info), timeout=start)

    def build(self) -> None:
        """This block, its runner and (on resume) its state, from the coordinator's run spec (the setup's)."""
        from sedona_runtime.training.block import BlockRunner, memory_kind
        from sedona_runtime.training.build import build_network
        from sedona_runtime.training.checkpoint import set_rng_state
        from sedona_runtime.training.run_dir import RunDir
        from sedona_runtime.training.spec import RunSpec

        # Started by torchrun, this process read its settings from its own command line: those every process
        # must share are the coordinator's, or the run stops here with the option named.
        check_agrees(self.pcfg, self.setup["pipeline"])
        spec = RunSpec.from_json(self.setup["spec"], where="the coordinator's run spec")
        cfg = spec.train
        self._check_shared_directory(cfg.out_dir)
        # Every block builds the whole network of the spec under the run's seed, like the single-process
        # trainer, and keeps its own block: identical initial weights with nothing to ship. The decoupling is
        # the spec's, resolved once by the coordinator: no decoupling file or spec string is read here.
        blocks = build_network(spec).blocks
        self.runner = BlockRunner(blocks[self.index - 1], cfg, self.device)
        if self.layout.replicas > 1:  # gradients averaged over the block's replicas before every step
            group = replica_group(self.store, self.layout, self.index, self.replica, self.pcfg.start_timeout)
            self.runner.grad_sync = GradSync(group, self.runner.block, self.layout.replicas, self.timeout,
                                             f"{block_name(self.index)}'s replicas")
        # Block 1 turns the coordinator's raw batches into input: the spec's statistics and augmentation.
        self.preprocess = spec.input.preprocess()
        self.memory_kind = memory_kind(self.device)
        self.checkpoints = RunDir(cfg.out_dir).checkpoints
        self.log_every = max(1, cfg.log_interval)
        step = self.setup["resume_step"]
        if step is not None:
            payload = ckpt.load_block(self.checkpoints, int(step), self.index)
            self.runner.load_state_dict(payload["blocks"][0])
            set_rng_state(payload["rng"])

    def _check_shared_directory(self, out_dir: str) -> None:
        """Blocks write their checkpoints where the coordinator reads them: the same directory, seen by all."""
        token = self.setup.get("token")
        if token is None:
            return
        path = Path(token["path"])
        try:
            seen = path.read_text()
        except OSError:
            seen = None
        if seen != token["value"]:
            raise SedonaError(f"{self.label} on {socket.gethostname()} does not see the run directory "
                              f"{out_dir} that the coordinator writes (no shared filesystem?): every machine of a "
                              "run must see --out at the same absolute path")

    def report(self, kind: str, step: int, data=None, **extra) -> None:
        self.reports.put(Report(self.index, kind, step, data, extra, self.replica), self.timeout)

    def loop(self) -> None:
        meter = BlockMeter(self.runner.step)
        meter.stats.memory_kind = self.memory_kind
        log_every = self.log_every
        spans: list[tuple[int, float, float]] | None = [] if self.pcfg.timeline else None
        inbox, out = self.transport.input, self.transport.output
        wait = self.pcfg.start_timeout  # the first item may wait for the others to start (data workers too)
        while True:
            t0 = time.perf_counter()
            depth = inbox.qsize()
            try:
                item = inbox.get(wait)
            except EndOfStream:
                break
            wait = self.timeout
            meter.waited_in(time.perf_counter() - t0, depth)
            if isinstance(item, Batch):
                t1, w1 = time.perf_counter(), time.time()
                x = self._input(item.x, item.y, item.draws) if item.raw else item.x
                res = self.runner.train_step(x, item.y)
                host = time.perf_counter() - t1
                # Samples the block trained on this step: its replicas' shards together.
                meter.trained(res.device_s if res.device_s is not None else host, self.runner.last_loss,
                              int(item.y.shape[0]) * self.layout.replicas, self.runner.step, res.timings,
                              res.timed_steps)
                if spans is not None:  # wall clock, so that spans of different processes line up
                    spans.append((self.runner.step, w1, w1 + host))
                if out is not None:
                    t2 = time.perf_counter()
                    out.put(Batch(item.step, res.out, item.y), self.timeout, ready=res.ready)
                    put_s = time.perf_counter() - t2
                    meter.waited_out(out.last_wait_s, max(0.0, put_s - out.last_wait_s))
                if self.runner.step % log_every == 0 and self.writes:
                    self._report_metrics(meter)
            elif isinstance(item, EvalBatch):
                self.on_eval(item)
            elif isinstance(item, Marker):
                self.on_marker(item)
        if self.runner.step % log_every and self.writes:  # the last interval, unless it was just reported
            self._report_metrics(meter)
        self.runner.check_finite()
        if out is not None:
            out.close(self.timeout)
        self.report("final", self.runner.step, None, **({"timeline": spans} if spans is not None else {}))
        self.reports.flush(self.timeout)

    def _input(self, x, y, draws=None):
        """Block 1: a raw batch from the coordinator (uint8) preprocessed on this block's device."""
        return self.preprocess(RawBatch(x, y, draws), self.device)

    def on_eval(self, item: EvalBatch) -> None:
        """Evaluate this block on one batch: report its head's logits, pass its features on."""
        x = self._input(item.x, item.y) if item.raw else item.x
        feats, logits = self.runner.eval_step(x)
        data = {"split": item.split, "index": item.index, "count": item.count, "logits": logits,
                "y": item.y if self.is_last else None}
        self.report("logits", item.step, data)
        if self.transport.output is not None:
            self.transport.output.put(EvalBatch(item.split, item.step, item.index, item.count, feats, item.y),
                                      self.timeout)

    def _report_metrics(self, meter: BlockMeter) -> None:
        self.runner.check_finite(wait=False)  # the steps whose loss reached the host: a report never waits
        self.report("metrics", self.runner.step, meter.report(self.runner.memory()).to_dict())

    def on_marker(self, marker: Marker) -> None:
        if marker.step != self.runner.step:  # the markers travel in order with the batches
            raise RuntimeError(f"marker for step {marker.step} arrived at step {self.runner.step}")
        # Replica 0 writes for the block (the replicas' weights are identical); the others pass it on.
        if self.writes and marker.kind == "checkpoint":
            self.runner.check_finite()  # a non-finite step never reaches a checkpoint
            bad = self.runner.block.first_non_finite()
            if bad is not None:
                raise RuntimeError(f"weight {bad!r} is not finite at step {marker.step}; checkpoint refused")
            ckpt.save_block(self.checkpoints, marker.step, self.index, self.runner.state_dict())
            self.report("saved", marker.step)
        elif self.writes and marker.kind == "validate":
            ckpt.save_candidate(self.checkpoints, marker.step, self.index, self.runner.block.state_dict())
            self.report("candidate", marker.step)
        if self.transport.output is not None:
            self.transport.output.put(marker, self.timeout)

    def run(self) -> int:
        """Set up, train until end-of-stream, wait to be released; 0 on success, 1 after a failure."""
        connected = False
        try:
            self.prepare()
            self.connect()
            connected = True
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # joined: the coordinator decides (run_stage)
            self.build()
            # Built (and resumed): tell the coordinator, which watches for failures until every block is
            # ready, then open the activation channels (p2p: a barrier over every process).
            self.report("ready", self.runner.step)
            self.transport.connect(self.setup["placements"], self.store)
            self.loop()
            STOP.wait_for(STATE.release.is_set, self.timeout, "the coordinator to release this block")
            self.watchdog.stop()
            stop_rpc(graceful=True, timeout=30.0)
            self.transport.close(graceful=True)
            return 0
        except (Aborted, KeyboardInterrupt):
            return self._fail(None, connected)  # told to stop: whoever stopped us reports why
        except PeerError as exc:
            return self._fail(("upstream", exc.origin, exc.message, exc.channel), connected)
        except ChannelTimeout as exc:  # this block's own bounded wait expired: its message is the cause
            return self._fail(("error", self.label, str(exc), False), connected)
        except ChannelError as exc:  # a transport failure, usually the symptom of a peer's death
            return self._fail(("error", self.label, str(exc), True), connected)
        except Exception as exc:  # a bug or bad data in this block: name it (bugs with their traceback)
            if not isinstance(exc, SedonaError):
                log.error("%s failed:\n%s", self.label, traceback.format_exc())
            # A plain SedonaError is a sentence for the user; other errors (NonFiniteLossError, bugs) are named.
            what = short(exc) if type(exc) is SedonaError else f"{type(exc).__name__}: {short(exc)}"
            return self._fail(("error", self.label, what, False), connected)

    def _fail(self, why: tuple[str, str, str, bool] | None, connected: bool) -> int:
        """`why`: (kind "error" (this block's) or "upstream", origin, message, whether it is a transport error)."""
        if why is not None and why[0] == "error" and under_torchrun():
            # The coordinator may run on another machine: the cause is said on this one too, on its
            # stderr and as the root cause of torchrun's report here. (Self-launched blocks share the
            # coordinator's terminal, which says it once.)
            line = f"error: {why[1]}: {why[2]}"
            log.error("%s", line)
            record_for_torchrun(line)
        if connected:
            self.watchdog.stop()
            if why is not None:
                kind, origin, message, channel = why
                if kind == "error":
                    try:
                        self.reports.fail(origin, message, channel=channel)
                    except Exception:
                        pass
                if self.transport.output is not None:
                    self.transport.output.fail(origin, message, timeout=1.0, channel=channel)
                time.sleep(0.2)  # let the best-effort error messages leave before the agent stops
            stop_rpc(graceful=False, timeout=3.0)
        return 1


def run_stage(pcfg: PipelineConfig, rank: int, world_size: int, meeting: Meeting, place: Placement) -> int:
    """Entry of block process `rank` (self-launched or started by torchrun; rank = block index when R = 1)."""
    # Ctrl-C in a terminal reaches every process of the group, and so does the SIGTERM of timeout(1),
    # a scheduler or torchrun. A block leaves both to the coordinator, which stops the run at a step
    # boundary and commits a checkpoint the blocks take part in (a second signal makes the coordinator
    # abort every block; a dead coordinator stops them through the watchdog). SIGTERM only once the
    # block has joined the run (Stage.run): before, there is nothing to save and SIGTERM ends it at once
    # (torchrun stops the other ranks so when one fails at start).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return Stage(pcfg, rank, world_size, meeting, place).run()
