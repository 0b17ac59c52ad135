"""Gradient-isolated blocks (layers + local head) and the runner that trains one block per step."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

from sedona_runtime.training.compiled import compiled_step
from sedona_runtime.training.lazy_read import LazyRead
from sedona_runtime.training.phase_clock import PhaseClock
from sedona_runtime.training.schedule import Schedule
from sedona_runtime.utils.errors import SedonaError

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from sedona_runtime.decoupling import Decoupling
    from sedona_runtime.heads import HeadSpec
    from sedona_runtime.models import LayeredNet
    from sedona_runtime.training.config import TrainConfig


class NonFiniteLossError(SedonaError):
    """A block's loss (or, at checkpoint time, a weight) became NaN or infinite: training diverged."""

    def __init__(self, block: int, num_blocks: int, step: int, value: float | None = None, *,
                 what: str = "loss", note: str = "") -> None:
        shown = f"{what} ({value})" if value is not None else what
        message = f"non-finite {shown} in block {block + 1}/{num_blocks} at step {step}"
        super().__init__(f"{message}; {note}" if note else f"{message}; training diverged (try a lower --lr)")
        self.block, self.num_blocks, self.step, self.value, self.what = block, num_blocks, step, value, what

    def with_note(self, note: str) -> "NonFiniteLossError":
        """The same error with `note` (e.g. which checkpoint was kept) appended to the message."""
        return NonFiniteLossError(self.block, self.num_blocks, self.step, self.value, what=self.what,
                                  note=f"training diverged (try a lower --lr); {note}")


class Block(nn.Module):
    """Layers `first..last` (1-based, inclusive) of a network plus the head that gives them a local loss.

    The last block's head is the network's own classifier, so K = 1 is the whole network.
    """

    def __init__(self, layers: nn.Sequential, head: nn.Module, index: int, num_blocks: int,
                 first: int = 1, last: int | None = None, head_name: str | None = None) -> None:
        super().__init__()
        self.layers = layers
        self.head = head
        self.index = index              # 0-based position in the decoupling
        self.num_blocks = num_blocks
        self.is_last = index == num_blocks - 1
        self.first = first
        self.last = last if last is not None else first + len(layers) - 1
        self.head_name = head_name or ("classifier" if self.is_last else type(head).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output features (layers only; the head is applied by the loss)."""
        return self.layers(x)

    @property
    def name(self) -> str:
        """Short label, e.g. 'block 2/4 (layers 5-8, aux2)'."""
        return f"block {self.index + 1}/{self.num_blocks} (layers {self.first}-{self.last}, {self.head_name})"

    def first_non_finite(self) -> str | None:
        """Name of the first parameter or buffer holding NaN/inf, or None when all are finite (one device read)."""
        named = [(n, t) for n, t in list(self.named_parameters()) + list(self.named_buffers()) if t.is_floating_point()]
        if not named:
            return None
        finite = torch.stack([torch.isfinite(t).all() for _, t in named])
        bad = torch.nonzero(~finite).flatten().tolist()
        return named[bad[0]][0] if bad else None


def head_spec_fn(model: "LayeredNet", input_shape: tuple[int, int, int], num_classes: int,
                 width: int) -> Callable[[int], "HeadSpec"]:
    """`fn(last_layer) -> HeadSpec` for a head attached after 1-based layer `last_layer` of `model`."""
    from sedona_runtime.heads import HeadSpec
    from sedona_runtime.models import layer_output_shapes

    shapes = layer_output_shapes(model, input_shape)

    def spec(last: int) -> HeadSpec:
        c, h, _ = shapes[last - 1]
        return HeadSpec(in_channels=c, in_size=h, num_classes=num_classes, width=width,
                        nc=model.layer_head_channels(last - 1))

    return spec


def build_blocks(model: "LayeredNet", dec: "Decoupling", spec_fn: Callable[[int], "HeadSpec"]) -> list[Block]:
    """Split `model` into the blocks of `dec`; heads are built in block order (so seeding is reproducible).

    The blocks share the model's layer and classifier modules: the model's weights are the blocks' weights.
    """
    from sedona_runtime.heads import build_head

    blocks = []
    k = len(dec.blocks)
    for i, b in enumerate(dec.blocks):
        layers = nn.Sequential(*[model.layers[l] for l in range(b.first - 1, b.last)])
        if i == k - 1:
            head, head_name = model.classifier, "classifier"
        else:
            head, head_name = build_head(b.head, spec_fn(b.last)), b.head
        blocks.append(Block(layers, head, i, k, first=b.first, last=b.last, head_name=head_name))
    return blocks


def build_optimizer(params: Any, cfg: "TrainConfig", device: torch.device | str = "cpu") -> torch.optim.Optimizer:
    """SGD with momentum (or Adam, for PredSim at scale) with the config's lr and weight decay.

    On CUDA the fused implementations: one kernel for the whole update, and with a GradScaler the
    inf/NaN check stays on the device (the unfused step reads `found_inf` on the host every step).
    """
    fused = {"fused": True} if torch.device(device).type == "cuda" else {}
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)


@dataclass
class StepResult:
    """What one block's training step hands on: its detached output, its loss and where the time went.

    On CUDA nothing here has waited for the device: `loss` reads the loss (and synchronises) only when
    asked, and `timings` holds the phases of the earlier steps whose CUDA events have completed by now
    (`timed_steps` of them; on CPU always this one step).
    """

    out: torch.Tensor                       # (N, C, H, W) features, detached, contiguous (before `ready`)
    loss_tensor: torch.Tensor               # 0-dim, detached, on the block's device
    timings: dict[str, float] = field(default_factory=dict)   # seconds per phase, summed over timed_steps
    timed_steps: int = 1
    device_s: float | None = None           # CUDA: device seconds of the timed steps (None on CPU)
    ready: Any = None                       # CUDA: an event recorded once `out` is written (after forward)

    @property
    def loss(self) -> float:
        """The step's loss as a float (on CUDA this waits for the step's forward pass)."""
        return float(self.loss_tensor)


def memory_kind(device: str | torch.device) -> str:
    """What a block's peak_memory is on `device`: torch's peak CUDA allocation, or the process RSS on CPU."""
    return "cuda_max_allocated" if torch.device(device).type == "cuda" else "process_rss"


class BlockRunner:
    """Owns one block's optimizer, cosine schedule, grad scaler and device; trains it one step at a time.

    Knows nothing of processes: the single-process trainer holds K of them, a pipeline stage holds one.
    """

    def __init__(self, block: Block, cfg: "TrainConfig", device: torch.device) -> None:
        self.block = block
        self.device = torch.device(device)
        self.dtype = getattr(torch, cfg.dtype)
        self.label_smoothing = float(cfg.label_smoothing or 0.0)
        block.to(device=self.device, dtype=self.dtype)
        self.optimizer = build_optimizer(block.parameters(), cfg, self.device)
        # The run's one schedule (training/schedule.py) gives the rate; closed-form cosine (not the recursive
        # CosineAnnealingLR): the rate depends on the step count only, which keeps resumed runs bit-identical.
        # A plain function, so the scheduler's state_dict holds no lambda state (checkpoints unchanged).
        schedule = Schedule(cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: schedule.factor(s))
        self.amp = bool(cfg.amp) and self.device.type == "cuda" and self.dtype == torch.float32
        if self.device.type == "cuda":  # fixed training shapes: cuDNN picks its fastest kernels once per shape
            torch.backends.cudnn.benchmark = bool(getattr(cfg, "cudnn_benchmark", True))
        self.memory_format = torch.channels_last if getattr(cfg, "channels_last", False) else None
        if self.memory_format is not None:
            block.to(memory_format=self.memory_format)
        self._forward, self._loss = compiled_step(block, self.label_smoothing, bool(getattr(cfg, "compile", False)))
        self._reads = LazyRead(self.device)  # loss and finiteness for reports, read without waiting
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step = 0                    # completed steps
        self.peak_memory = 0             # bytes: CUDA peak allocated, or process RSS on CPU
        self.peak_reserved = 0           # bytes: CUDA memory held by the caching allocator (0 on CPU)
        self.clock = PhaseClock(self.device)
        self._first_bad = (torch.full((), -1, dtype=torch.int64, device=self.device)
                           if self.device.type == "cuda" else None)
        # Called between backward and the optimizer step when set: the pipeline's replicas average the
        # block's gradients there (pipeline/replicas.GradSync). None: the gradients are this process's own.
        self.grad_sync: Callable[[], None] | None = None

    @property
    def lr(self) -> float:
        """Learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        """Forward, local loss, backward inside the block, optimizer and schedule step.

        x: (N, C, H, W) input features (any device; detached here), y: (N,) int64 labels.
        Raises NonFiniteLossError when the loss is NaN or infinite: on CPU at once, before the weights
        are touched; on CUDA at the next `check_finite()` (the loss is never read in the step, so the
        host never waits for the device), which the pipeline and the trainer call before every
        checkpoint and report, so a non-finite step never reaches a checkpoint.
        """
        block = self.block
        block.train()
        x = x.detach()  # the boundary: no gradient leaves the block, even when a caller hands an attached tensor
        x = x.to(self.device, dtype=self.dtype, non_blocking=True) if x.is_floating_point() else x.to(self.device)
        y = y.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # host-side counters: the peak of this step
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        clock = self.clock
        clock.start()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            feats = self._forward(x)
            # Contiguous before `ready`: a transport that sends once `ready` fired must find the bytes it
            # sends written (a channels_last output or a layer ending in a transpose is a strided view;
            # making it contiguous later, on another thread's stream, raced the send).
            out = feats.detach()
            if not out.is_contiguous():
                out = out.contiguous()
            ready = clock.mark("forward")
            loss, _ = self._loss(feats, y)
        clock.mark("head")
        self._check_loss(loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_sync is not None:
            self.grad_sync()
        clock.mark("backward")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        clock.mark("optimizer")
        self.step += 1
        self._record_memory()
        self.post_loss(loss)
        timings, steps, device_s = clock.harvest()
        return StepResult(out=out, loss_tensor=loss.detach(), timings=timings, timed_steps=steps,
                          device_s=device_s, ready=ready)

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, head logits) of the block in eval mode on its current weights, as training.evaluate
        computes them: x (N, C, H, W) in, features out for the next block, float32 (N, classes) logits
        of this block's own head (the last block's: the classifier). The training mode is restored."""
        block = self.block
        mode = block.training
        block.eval()
        try:
            x = x.to(self.device, dtype=self.dtype, non_blocking=True) if x.is_floating_point() else x.to(self.device)
            if self.memory_format is not None:
                x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                feats = block(x)
                logits = block.head(feats).float()
        finally:
            block.train(mode)
        return feats, logits

    def _check_loss(self, loss: torch.Tensor) -> None:
        if self.device.type != "cuda":
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(self.block.index, self.block.num_blocks, self.step + 1, value)
            return
        # Device-side bookkeeping only: the first step whose loss was not finite (-1: none so far).
        bad = ~torch.isfinite(loss.detach())
        step = torch.full((), self.step + 1, dtype=torch.int64, device=self.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)

    def post_loss(self, loss: torch.Tensor) -> None:
        """Queue step `self.step`'s loss (and on CUDA the first bad step) for `last_loss` / `check_finite`."""
        if self._first_bad is None:
            self._reads.post(self.step, loss)
        else:
            self._reads.post(self.step, loss, self._first_bad)

    def check_finite(self, wait: bool = True) -> None:
        """Raise NonFiniteLossError if a step since the start had a NaN/inf loss.

        wait=True (checkpoints, the end): every step so far, one device read on CUDA. wait=False (progress
        reports): the steps up to the newest one whose loss reached the host already (LazyRead), no wait.
        """
        if self._first_bad is None:
            return
        if wait:
            first = int(self._first_bad)
        else:
            seen = self._reads.latest()
            first = int(seen[1][1]) if seen is not None else -1
        if first >= 0:
            raise NonFiniteLossError(self.block.index, self.block.num_blocks, first)

    def last_loss(self) -> float:
        """The loss of the newest step whose loss reached the host without waiting (CPU: the last step's);
        NaN before any."""
        seen = self._reads.latest()
        return seen[1][0] if seen is not None else math.nan

    def memory(self) -> dict[str, int]:
        """Peak memory in bytes since the start: {"peak": allocated (CUDA) or RSS (CPU), "reserved": CUDA cache}."""
        return {"peak": self.peak_memory, "reserved": self.peak_reserved}

    def _record_memory(self) -> None:
        if self.device.type == "cuda":
            used = torch.cuda.max_memory_allocated(self.device)
            self.peak_reserved = max(self.peak_reserved, int(torch.cuda.max_memory_reserved(self.device)))
        else:
            import psutil

            used = psutil.Process().memory_info().rss
        self.peak_memory = max(self.peak_memory, int(used))

    def state_dict(self) -> dict:
        """Block weights, optimizer, scheduler, scaler and step count."""
        return {"block": self.block.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved (SedonaError when it belongs to a different block)."""
        try:
            self.block.load_state_dict(state["block"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise SedonaError(f"checkpoint does not match {self.block.name}: {str(exc).splitlines()[0]}") from exc
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
