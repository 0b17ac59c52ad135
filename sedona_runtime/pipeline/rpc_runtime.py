"""Starting, watching and stopping this process's torch.distributed.rpc agent (TensorPipe): the control plane."""
from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Callable

import torch
import torch.distributed.rpc as rpc

from sedona_runtime.pipeline.protocol import rpc_abort, rpc_ping, short

log = logging.getLogger(__name__)

# TensorPipe's transports for the agent's messages. Its default also offers "shm", whose reactor thread
# polls its ring buffers without sleeping (about half a core per process, measured here), which starves the
# blocks' compute, and a process starting beside a run, on a machine with few cores. "uv" (TCP) waits in
# epoll. Tensors are unaffected: on one host TensorPipe's channels (cma, basic) move their bytes.
RPC_TRANSPORTS = ["uv"]


def start_rpc(name: str, rank: int, world_size: int, init_method: str, *,
              device: torch.device, device_maps: dict[str, dict[str, str]] | None = None,
              timeout: float = 120.0, threads: int = 8) -> None:
    """Join the RPC group (a barrier over all `world_size` processes).

    `init_method`: a URL (rendezvous.init_method_for hands it the run's store). `device_maps`: TensorPipe
    device maps to peers ({peer: {local device: remote device}}), only for a CUDA `device`.
    """
    opts = rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=threads, rpc_timeout=timeout, init_method=init_method, _transports=RPC_TRANSPORTS)
    if device.type == "cuda":
        opts.set_devices([device])
        for peer, mapping in (device_maps or {}).items():
            opts.set_device_map(peer, mapping)
    with warnings.catch_warnings():  # torch's own join barrier trips its gloo deprecation warning
        warnings.simplefilter("ignore", UserWarning)
        rpc.init_rpc(name, rank=rank, world_size=world_size, rpc_backend_options=opts)


def stop_rpc(graceful: bool, timeout: float = 10.0) -> None:
    """Leave the RPC group. Graceful shutdown is a barrier: only use it when every peer is healthy."""
    done = threading.Event()

    def _shutdown() -> None:
        try:
            with warnings.catch_warnings():  # torch's own shutdown barrier trips its gloo deprecation warning
                warnings.simplefilter("ignore", UserWarning)
                rpc.shutdown(graceful=graceful, timeout=timeout)
        except Exception as exc:  # a dead peer makes even the local teardown complain
            log.debug("rpc shutdown: %s", short(exc))
        finally:
            done.set()

    t = threading.Thread(target=_shutdown, name="rpc-shutdown", daemon=True)
    t.start()
    if not done.wait(timeout + 2.0):
        log.warning("rpc shutdown did not finish in %.0fs", timeout)


def abort_peers(peers: list[str], reason: str, timeout: float = 2.0) -> None:
    """Tell every reachable peer to stop (best effort; unreachable peers have their own watchdog)."""
    futs = []
    for peer in peers:
        try:
            futs.append(rpc.rpc_async(peer, rpc_abort, args=(reason,), timeout=timeout))
        except Exception:
            pass
    deadline = time.monotonic() + timeout
    for f in futs:
        while not f.done() and time.monotonic() < deadline:
            time.sleep(0.01)


def ping(peer: str, timeout: float) -> int:
    """The peer's pid; raises if it does not answer within `timeout`."""
    return rpc.rpc_sync(peer, rpc_ping, timeout=timeout)


class Watchdog:
    """Pings peers every `interval` seconds; the first that fails to answer triggers `on_failure(peer, why)`.

    A process killed outright cannot send its own error, so every process watches the ones it
    depends on: the coordinator watches all blocks, each block watches the coordinator. `labels`: how
    `why` names a peer ({RPC name: label}, e.g. "block1 replica 1"); its RPC name otherwise.
    """

    def __init__(self, peers: list[str], on_failure: Callable[[str, str], None],
                 interval: float = 0.5, timeout: float = 5.0, labels: dict[str, str] | None = None) -> None:
        self.peers, self.on_failure = peers, on_failure
        self.labels = dict(labels or {})
        self.interval, self.timeout = interval, timeout
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._quit.set()
        self._thread.join(self.timeout + 1.0)

    def _run(self) -> None:
        while not self._quit.wait(self.interval):
            futs = {}
            for peer in self.peers:
                try:
                    futs[peer] = rpc.rpc_async(peer, rpc_ping, timeout=self.timeout)
                except Exception as exc:
                    futs[peer] = exc
            for peer, fut in futs.items():
                err = fut if isinstance(fut, Exception) else None
                if err is None:
                    deadline = time.monotonic() + self.timeout + 1.0
                    while not fut.done() and time.monotonic() < deadline and not self._quit.is_set():
                        time.sleep(0.01)
                    if self._quit.is_set():
                        return
                    try:
                        fut.wait()
                    except Exception as exc:
                        err = exc
                if err is not None:
                    if not self._quit.is_set():
                        label = self.labels.get(peer, peer)
                        self.on_failure(peer, f"process {label} stopped answering ({short(err)})")
                    return
