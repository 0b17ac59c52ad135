"""GPU check 1: the block-to-block hand-off between two processes on one GPU, for every transport mode.

For each mode (rpc with a cuda:0 -> cuda:0 device map, rpc through pinned host memory, p2p), a sender
puts N fp16 activations of MB MiB each, every one written by a kernel that a deliberate GPU spin
(torch.cuda._sleep) delays, so a missing stream dependency shows deterministically. The receiver
takes each through the channel (cuda_handoff.on_take) and compares it with what was sent at once,
on its default stream, without any synchronize: wrong elements mean the hand-off is not stream-safe.
It records reserved vs allocated memory after every message (TensorPipe's pool streams would make
reserved grow with the message count), and the put+flush latency of one message per mode. Then CL
channels_last messages (a strided layout: a block computing with --channels-last, or a layer ending in a
transpose), each written late by a copy kernel after a spin, are compared element by element with what
was sent: the bytes a transport sends must be the written ones, in NCHW order (issue 21, item 2).

    python benchmarks/gpu/transport_check.py [--dry-cpu]      # one JSON line per mode on stdout
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

DRY = "--dry-cpu" in sys.argv
N = int(os.environ.get("N", "8" if DRY else "100"))
MB = int(os.environ.get("MB", "1" if DRY else "64"))
SLEEP = 0 if DRY else int(os.environ.get("SLEEP", "20000000"))
DEV = "cpu" if DRY else "cuda:0"
MODES = ("rpc-device-map", "rpc-host", "p2p")
CL = int(os.environ.get("CL", "4"))
CL_SHAPE = (8, 64, 32, 32)  # 1 MiB of fp16


def _pattern(device: str) -> torch.Tensor:
    """A position-dependent NCHW pattern, exact in fp16 (integers below 2048)."""
    n = 1
    for d in CL_SHAPE:
        n *= d
    return (torch.arange(n, device=device) % 2039).to(torch.float16).view(CL_SHAPE)


def _connect(mode: str, rank: int, port: int):
    from sedona_runtime.pipeline import p2p_group, rendezvous
    from sedona_runtime.pipeline.protocol import STATE
    from sedona_runtime.pipeline.rpc_runtime import start_rpc

    if not DRY:
        torch.cuda.set_device(0)
    STATE.device = torch.device(DEV)
    rendezvous.use_interface(rendezvous.loopback_interface())
    store = rendezvous.connect_store("127.0.0.1", port, 2, 60.0)
    maps = {"recv": {DEV: DEV}} if mode == "rpc-device-map" and rank == 0 and not DRY else None
    return store, maps, rendezvous, p2p_group, start_rpc


def _side(rank: int, port: int, mode: str, results) -> None:
    from sedona_runtime.pipeline.channel import EndOfStream
    from sedona_runtime.pipeline.p2p_channel import Edge, P2pRecvChannel, P2pSendChannel
    from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel
    from sedona_runtime.pipeline.rpc_runtime import stop_rpc

    store, maps, rendezvous, p2p_group, start_rpc = _connect(mode, rank, port)
    recv = RpcRecvChannel("q", depth=2) if rank == 1 and mode.startswith("rpc") else None
    start_rpc("send" if rank == 0 else "recv", rank, 2, rendezvous.init_method_for(store),
              device=torch.device(DEV), device_maps=maps, timeout=120)
    if mode == "p2p":
        p2p_group.join(store, rank, 2, 120.0, [])
    numel = MB * 2**19  # fp16: 2 bytes each
    if rank == 0:
        ch = (RpcSendChannel("recv", "q", window=2, device_map=mode == "rpc-device-map") if mode.startswith("rpc")
              else P2pSendChannel(Edge(1, "recv", timeout=120.0), window=2))
        for i in range(N):
            x = torch.empty(numel, device=DEV, dtype=torch.float16)
            ready = None
            if not DRY:
                torch.cuda._sleep(SLEEP)  # the producing kernel is late, as a block's forward can be
            x.fill_(float(i % 1000 + 1))
            if not DRY:
                ready = torch.cuda.Event()
                ready.record()
            ch.put((i, x), 120.0, ready=ready)
        pattern = _pattern(DEV)
        for j in range(CL):
            x = torch.empty(CL_SHAPE, device=DEV, dtype=torch.float16).to(memory_format=torch.channels_last)
            if not DRY:
                torch.cuda._sleep(SLEEP)
            x.copy_(pattern)  # late, strided: a send that reads before this copy, or in storage order, is wrong
            ready = None
            if not DRY:
                ready = torch.cuda.Event()
                ready.record()
            ch.put((-2 - j, x), 120.0, ready=ready)
        lat = []
        small = torch.ones(2048, device=DEV, dtype=torch.float16)
        for i in range(12):
            t0 = time.perf_counter()
            ch.put((-1, small), 120.0)
            ch.flush(120.0)
            lat.append(time.perf_counter() - t0)
        big = torch.ones(numel, device=DEV, dtype=torch.float16)
        big_lat = []
        for i in range(6):
            t0 = time.perf_counter()
            ch.put((-1, big), 120.0)
            ch.flush(120.0)
            big_lat.append(time.perf_counter() - t0)
        ch.close(120.0)
        results.put({"mode": mode, "side": "send", "latency_ms_small": round(1e3 * statistics.median(lat[2:]), 3),
                     f"latency_ms_{MB}MiB": round(1e3 * statistics.median(big_lat[1:]), 3)})
    else:
        inbox = recv if recv is not None else P2pRecvChannel(Edge(0, "send", timeout=120.0), depth=2,
                                                             device=torch.device(DEV))
        wrong_msgs = wrong = 0
        cl_seen = cl_wrong = 0
        pattern = _pattern(DEV)
        reserved, allocated = [], []
        while True:
            try:
                i, x = inbox.get(120.0)
            except EndOfStream:
                break
            if i <= -2:  # a channels_last message: compare with the NCHW pattern, no synchronize before
                cl_seen += 1
                cl_wrong += int((x.to(DEV, non_blocking=True).reshape(CL_SHAPE) != pattern).sum())
                continue
            if i < 0:
                continue
            x = x.to(DEV, non_blocking=True)  # a host-staged activation is copied in, as a block does
            bad = int((x != float(i % 1000 + 1)).sum())  # read on the default stream, no synchronize before
            wrong_msgs += bad > 0
            wrong += bad
            del x
            if not DRY:
                reserved.append(torch.cuda.memory_reserved())
                allocated.append(torch.cuda.memory_allocated())
        results.put({"mode": mode, "side": "recv", "messages": N, "MiB_each": MB, "sender_spin_cycles": SLEEP,
                     "messages_with_wrong_data": wrong_msgs, "wrong_elements": wrong,
                     "channels_last_messages": cl_seen, "channels_last_wrong_elements": cl_wrong,
                     "max_reserved_GiB": round(max(reserved, default=0) / 2**30, 3),
                     "max_allocated_GiB": round(max(allocated, default=0) / 2**30, 3),
                     "reserved_GiB_every_8": [round(r / 2**30, 2) for r in reserved[::8]]})
    stop_rpc(graceful=True)
    if mode == "p2p":
        p2p_group.leave()


def main() -> int:
    from sedona_runtime.pipeline import rendezvous

    ctx = mp.get_context("spawn")
    for mode in MODES:
        sock = rendezvous.listen_loopback(0)
        port = sock.getsockname()[1]
        store = rendezvous.serve_store(sock, 2, 120.0)  # noqa: F841 - serves while the pair runs
        results = ctx.Queue()
        procs = [ctx.Process(target=_side, args=(r, port, mode, results)) for r in (0, 1)]
        for p in procs:
            p.start()
        merged = {}
        try:
            for _ in procs:
                merged.update(results.get(timeout=240))
        except Exception as exc:  # noqa: BLE001 - report and go on to the next mode
            merged.update({"mode": mode, "error": f"{type(exc).__name__}: {exc}"})
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        merged.pop("side", None)
        print(json.dumps(merged), flush=True)
        del store
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
