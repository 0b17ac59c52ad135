"""Pinning a block process to its device: a CUDA device, or a disjoint set of CPU cores."""
from __future__ import annotations

import logging

import psutil
import torch

from sedona_runtime.utils.errors import SedonaError

log = logging.getLogger(__name__)


def available_cores() -> list[int]:
    """CPU cores this process may run on (respects an inherited affinity mask, e.g. taskset)."""
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, NotImplementedError, psutil.Error):  # macOS has no affinity API
        return list(range(psutil.cpu_count() or 1))


def core_sets(slots: int, cores: list[int] | None = None) -> list[list[int]]:
    """`slots` core sets: disjoint contiguous chunks when there are enough cores.

    With more slots than cores (4 blocks on a 2-core machine) the cores are dealt round-robin, one
    per slot, so slots share cores: the blocks still run, but no longer mirror K separate devices.
    """
    cores = list(cores if cores is not None else available_cores())
    if slots <= 0:
        return []
    if slots > len(cores):
        return [[cores[i % len(cores)]] for i in range(slots)]
    base, extra = divmod(len(cores), slots)
    out, start = [], 0
    for i in range(slots):
        n = base + (1 if i < extra else 0)
        out.append(cores[start:start + n])
        start += n
    return out


def normalize_device(name: str | torch.device) -> str:
    """The one spelling of a device every part of a run compares: 'cpu' or 'cuda:N' (a bare 'cuda' is cuda:0,
    the device a fresh process uses). Raises RuntimeError for a string torch cannot parse.

    A bare 'cuda' next to 'cuda:0' names one GPU: compared as strings they looked like two (an NCCL pair on
    one GPU fails with "Duplicate GPU detected"; a device-map key 'cuda' never matched 'cuda:0').
    """
    d = torch.device(name)
    if d.type == "cuda":
        return f"cuda:{0 if d.index is None else d.index}"
    return str(d)


def same_gpu(a: dict, b: dict) -> bool:
    """Whether two placements ({host, device}) are one GPU: same host and same CUDA index."""
    da, db = normalize_device(a["device"]), normalize_device(b["device"])
    return da.startswith("cuda") and da == db and a.get("host") == b.get("host")


def parse_devices(spec: str, count: int, unit: str = "blocks") -> list[str] | None:
    """Validate a device spec for `count` blocks: 'auto', 'cpu', 'cuda' or a comma list (one per block).

    Returns the explicit per-block list, normalised ('cpu' / 'cuda:N', normalize_device), or None for
    auto/cpu/cuda (resolved per process by slot).
    Raises SedonaError before any process starts when a device does not exist.
    """
    spec = (spec or "auto").strip()
    ncuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec in ("auto", "cpu"):
        return None
    if spec == "cuda":
        if ncuda == 0:
            raise SedonaError("--devices cuda: no CUDA device is available on this machine")
        return None
    items = [s.strip() for s in spec.split(",") if s.strip()]
    for dev in items:  # what each entry names first: a typo is not a length problem
        try:
            torch.device(dev)
        except RuntimeError:
            example = ",".join(f"cuda:{i}" for i in range(count))
            raise SedonaError(f"--devices: {dev!r} is not a device: use auto, cpu, cuda, or a comma list with one "
                              f"device per block (cpu or cuda:N, e.g. {example})") from None
    if len(items) != count:
        raise SedonaError(f"--devices lists {len(items)} device(s) but the pipeline has {count} {unit}")
    for dev in items:
        d = torch.device(dev)
        if d.type == "cuda":
            index = 0 if d.index is None else d.index
            if index >= ncuda:
                raise SedonaError(f"--devices: {dev} does not exist (this machine has {ncuda} CUDA device(s))")
        elif d.type != "cpu":
            raise SedonaError(f"--devices: {dev!r} is not supported (use cpu or cuda:N)")
    return [normalize_device(dev) for dev in items]


def resolve_device(spec: str, slot: int, explicit: list[str] | None = None) -> torch.device:
    """This process's device: the explicit entry, else cuda:(slot mod #GPUs) when CUDA exists, else cpu."""
    if explicit is not None:
        return torch.device(normalize_device(explicit[slot]))
    if spec == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", slot % torch.cuda.device_count())


def pin(device: torch.device, cores: list[int] | None, threads: int = 0) -> int:
    """Pin this process: select the CUDA device, or restrict it to `cores` with one torch thread per core.

    Returns the number of torch intra-op threads set. `threads` > 0 overrides the per-core count
    (threads=1 makes CPU kernels bit-reproducible across processes, which the exactness test needs).
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cores:
        try:
            psutil.Process().cpu_affinity(cores)
        except (AttributeError, NotImplementedError, psutil.Error) as exc:
            log.warning("cannot set CPU affinity %s: %s", cores, exc)
    n = threads if threads > 0 else max(1, len(cores) if cores else torch.get_num_threads())
    torch.set_num_threads(n)
    return n
