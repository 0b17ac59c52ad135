"""The activation transport of one process: its input and output channels, for `--transport rpc|p2p`.

Ranks: 0 is the coordinator, i is block i; activations flow 0 -> 1 -> ... -> K. Both transports give
the same bounded, ordered, stop-aware channels (channel.py), so the coordinator's feed and the block
loop do not know which one carries their items. Reports, setup, liveness and abort always travel on
RPC (protocol.py), the control plane.

- rpc: each block owns an RPC-backed queue (registered before it joins the group, so no put can miss
  it); senders put with asynchronous RPCs. CUDA tensors go device to device when `device_maps` is on
  (TensorPipe), else through pinned host memory.
- p2p: c10d send/recv (p2p_channel.py) on a gloo group of all ranks, NCCL between two GPUs.
"""
from __future__ import annotations

import torch

from sedona_runtime.pipeline import p2p_group
from sedona_runtime.pipeline.channel import RecvChannel, SendChannel
from sedona_runtime.pipeline.config import START_TIMEOUT_S
from sedona_runtime.pipeline.p2p_channel import Edge, P2pRecvChannel, P2pSendChannel
from sedona_runtime.pipeline.protocol import COORDINATOR, INPUT_QUEUE, block_name
from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel

TRANSPORTS = ("rpc", "p2p")


def rank_name(rank: int) -> str:
    return COORDINATOR if rank == 0 else block_name(rank)


class Transport:
    """Opens and closes the channels of rank `rank` in a run of `blocks` blocks."""

    def __init__(self, kind: str, rank: int, blocks: int, *, depth: int, window: int, timeout: float,
                 device: str = "cpu", device_maps: bool = False, layout=None) -> None:
        if kind not in TRANSPORTS:
            raise ValueError(f"unknown transport {kind!r} (known: {', '.join(TRANSPORTS)})")
        self.kind, self.rank, self.K = kind, rank, blocks
        self.depth, self.window, self.timeout = depth, window, timeout
        self.device, self.device_maps = torch.device(device), device_maps
        from sedona_runtime.pipeline.replicas import Layout

        # K blocks x R replicas (replicas.Layout): who feeds whom; R = 1 is rank i -> rank i + 1.
        self.layout = layout or Layout(blocks)
        self.input: RecvChannel | None = None
        self.output: SendChannel | None = None   # the first (with replicas, the coordinator has R)
        self.outputs: list[SendChannel] = []
        self._joined = False

    def before_join(self) -> None:
        """rpc: own the input queue before joining the RPC group (a put must never find it missing)."""
        if self.kind == "rpc" and self.rank > 0:
            self.input = RpcRecvChannel(INPUT_QUEUE, self.depth)

    def connect(self, placements: dict[int, dict], store) -> None:
        """Open the output (and, for p2p, the input) once every block's placement is known.

        p2p joins a c10d group of all K + 1 ranks: every rank calls this, the coordinator too.
        """
        lay = self.layout
        nexts = lay.next_ranks(self.rank)
        if self.kind == "rpc":
            direct = self.device_maps and self.rank > 0 and self.device.type == "cuda"
            self.outputs = [RpcSendChannel(lay.name(n), INPUT_QUEUE, self.window, device_map=direct) for n in nexts]
            self.output = self.outputs[0] if self.outputs else None
            return
        nccl = p2p_group.nccl_edges(placements, self.K, lay.edges())
        groups = p2p_group.join(store, self.rank, lay.world_size, max(2 * self.timeout, START_TIMEOUT_S), nccl)
        self._joined = True
        if self.rank > 0:
            prev = lay.prev_rank(self.rank)
            self.input = P2pRecvChannel(self._edge(prev, groups.get((prev, self.rank))), self.depth, self.device)
        self.outputs = [P2pSendChannel(self._edge(n, groups.get((self.rank, n))), self.window) for n in nexts]
        self.output = self.outputs[0] if self.outputs else None

    def _edge(self, peer: int, group) -> Edge:
        # The thread's c10d waits are bounded by twice the run's timeout, so that the block's own bounded
        # wait (one --timeout) reports a stall first, with the better message.
        return Edge(peer, self.layout.name(peer), group, group is not None, 2 * self.timeout)

    def close(self, graceful: bool) -> None:
        """Release the channels; leave the c10d group after a clean run (a failed one exits without it)."""
        if self.input is not None:
            self.input.close()
        if graceful and self._joined:
            p2p_group.leave()
