"""Where a run's processes meet: one key-value store for RPC and c10d, and which interface they listen on.

A run on one machine listens on loopback only: RPC executes pickled Python from any peer that
connects, so nothing of a local run may be reachable from the network. The store's server binds a
socket we bind ourselves on 127.0.0.1 (TCPStore's `master_listen_fd`), and TensorPipe and gloo are
told to use the loopback interface (TP_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, and NCCL_SOCKET_IFNAME for
NCCL's bootstrap and socket fallback) before they start. A run
over several machines (torchrun, world size K + 1) binds the interface the user names with
`--iface`, else whatever the host name resolves to (torchrun's own rendezvous decides the store).
"""
from __future__ import annotations

import datetime
import errno
import importlib
import itertools
import os
import socket
from dataclasses import dataclass
from typing import Any

import psutil
import torch.distributed as dist

from sedona_runtime.utils.errors import SedonaError

LOOPBACK = "127.0.0.1"
_IFACE_VARS = ("TP_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
_SCHEME_IDS = itertools.count()


@dataclass(frozen=True)
class Meeting:
    """How a process finds the run's store: `host`:`port` (a self-launched run), or torchrun's (None)."""

    host: str | None = None
    port: int | None = None
    iface: str | None = None     # the interface TensorPipe and gloo listen on (None: the host name's)

    @property
    def torchrun(self) -> bool:
        return self.port is None


def open_store(meeting: Meeting, rank: int, world_size: int, timeout: float) -> dist.Store:
    """A client of the run's store (for a self-launched block) or torchrun's store."""
    if meeting.torchrun:
        return env_store(rank, world_size, timeout)
    return connect_store(meeting.host or LOOPBACK, int(meeting.port), world_size, timeout)


def loopback_interface() -> str:
    """The name of the interface holding 127.0.0.1 ('lo' on Linux)."""
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == LOOPBACK for a in addrs):
            return name
    return "lo"


def interface_env(iface: str | None) -> dict[str, str]:
    """Environment that makes TensorPipe, gloo and NCCL listen on `iface` (nothing when None)."""
    return {v: iface for v in _IFACE_VARS} if iface else {}


def check_interface(iface: str) -> None:
    """SedonaError unless `iface` is a network interface of this machine."""
    known = sorted(psutil.net_if_addrs())
    if iface not in known:
        raise SedonaError(f"--iface {iface!r} is not a network interface of this machine (it has {', '.join(known)})")


def use_interface(iface: str | None) -> None:
    """Set the interface for this process's TensorPipe, gloo and NCCL (call before any of them starts)."""
    os.environ.update(interface_env(iface))


def listen_loopback(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: a free one); SedonaError when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SedonaError(f"--port {port} is already in use on this machine; pick another or 0") from None
        raise SedonaError(f"cannot use --port {port}: {exc.strerror or exc}") from None
    return sock


def serve_store(sock: socket.socket, world_size: int, timeout: float) -> dist.Store:
    """The store's server on an already listening socket (the coordinator of a one-machine run).

    The store takes the socket over (and closes it when it is destroyed): `sock` is detached here.
    """
    port = sock.getsockname()[1]
    store = dist.TCPStore(LOOPBACK, port, world_size, True, timeout=datetime.timedelta(seconds=timeout),
                          wait_for_workers=False, master_listen_fd=sock.fileno())
    sock.detach()
    return store


def connect_store(host: str, port: int, world_size: int, timeout: float) -> dist.Store:
    """A client of the run's store."""
    return dist.TCPStore(host, port, world_size, False, timeout=datetime.timedelta(seconds=timeout))


def env_store(rank: int, world_size: int, timeout: float) -> dist.Store:
    """torchrun's store (MASTER_ADDR / MASTER_PORT, or the elastic agent's)."""
    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size,
                                       timeout=datetime.timedelta(seconds=timeout)))
    return store


def init_method_for(store: dist.Store) -> str:
    """An init_method URL that hands `store` to torch.distributed.rpc (which accepts URLs only)."""
    scheme = f"sedona-store-{next(_SCHEME_IDS)}"

    def _handler(url: str, **_kwargs: Any):
        yield (store, _kwargs.get("rank", 0), _kwargs.get("world_size", 1))

    importlib.import_module("torch.distributed.rendezvous").register_rendezvous_handler(scheme, _handler)
    return f"{scheme}://"
