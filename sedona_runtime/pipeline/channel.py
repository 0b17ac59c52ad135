"""The transport-neutral channel interface that pipeline blocks talk through."""
from __future__ import annotations

import abc
from typing import Any


class ChannelError(RuntimeError):
    """The transport failed: the peer died, a wait timed out, or the run was aborted."""


class ChannelTimeout(ChannelError):
    """A bounded wait on a channel expired."""


class Aborted(ChannelError):
    """This process was told to stop (a peer failed, Ctrl-C, the coordinator went away)."""


class EndOfStream(Exception):
    """The sender closed the channel: no more items will arrive."""


class PeerError(ChannelError):
    """An upstream process failed and sent its error down the channel instead of an item (messages.Failure).

    `origin` names the process as messages do ("block2", "block1 replica 1"); `channel`: its failure was a
    transport error (a symptom), not its own.
    """

    def __init__(self, origin: str, message: str, channel: bool = False) -> None:
        super().__init__(f"{origin}: {message}")
        self.origin = origin
        self.message = message
        self.channel = channel


class SendChannel(abc.ABC):
    """The sending end of a bounded FIFO channel.

    The block loop (worker.Stage.loop) and the coordinator's feed use only these two interfaces;
    rpc_channel.py implements them over torch.distributed.rpc queues, p2p_channel.py over c10d
    point-to-point send/recv (gloo, NCCL between GPUs). transport.py picks one.

    `put` may return before the receiver has the item (a bounded window of unacknowledged puts
    keeps the sender busy while the transfer completes), but never lets more than the receiver's
    queue depth plus the window pile up: a full receiver blocks the sender (backpressure).
    """

    last_wait_s: float = 0.0  # how long the last put waited for the receiver (backpressure), for the meters

    @abc.abstractmethod
    def put(self, item: Any, timeout: float, ready: Any = None) -> None:
        """Send `item`; raise ChannelTimeout if it is not accepted within `timeout` seconds.

        `ready`: for CUDA tensors, a CUDA event after which the producer has written them (None: all
        work enqueued on the current stream so far). The caller may free or reuse nothing it put.
        """

    @abc.abstractmethod
    def close(self, timeout: float) -> None:
        """Send end-of-stream after every item already put, and wait until all are accepted."""

    @abc.abstractmethod
    def fail(self, origin: str, message: str, timeout: float, channel: bool = False) -> None:
        """Send an error down the channel as a messages.Failure (best effort: never raises); `channel`: it is
        a transport error of `origin` (a symptom), not its own."""

    @abc.abstractmethod
    def flush(self, timeout: float) -> None:
        """Wait until every item put so far has been accepted by the receiver."""


class RecvChannel(abc.ABC):
    """The receiving (owning) end of a bounded FIFO channel."""

    @abc.abstractmethod
    def get(self, timeout: float) -> Any:
        """The next item; EndOfStream after close, PeerError after fail, ChannelTimeout on timeout."""

    @abc.abstractmethod
    def qsize(self) -> int:
        """Items waiting in the queue now (for the live display)."""

    def close(self) -> None:
        """Release what the channel holds in this process (its queue name, its receiving thread)."""
