"""Per-message cost of the pipeline's two transports vs a plain torch.distributed send/recv (gloo), two processes.

    ./run python benchmarks/queue_latency.py [--reps 20] [--json out.json]

Transports: `rpc` (the RPC-backed bounded queue), `p2p` (the c10d point-to-point channel: a header
and the tensors on gloo, sent and received by the channels' threads), `gloo` (raw blocking
send/recv, the floor). Latency: one message, then wait until the receiver has it (rpc: the put's
acknowledgement, once the item is in the receiver's queue; p2p: flush, once the last send completed
against the receiver's posted buffer; gloo: a 1-element reply) -> a round trip carrying the payload
one way. Throughput: a stream of messages (rpc and p2p: window 2, queue depth 2, the receiver
draining the queue on its own thread; gloo: back-to-back send/recv). Medians over repetitions.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"activation 128x64x32x32 fp32": (128, 64, 32, 32), "small 16 fp32": (16,)}
# Small messages stream many more per run, so that the timing is not one scheduler tick.
SMALL_STREAM_FACTOR = 20


def _time_channel(lat_ch, stream_ch, x: torch.Tensor, reps: int, stream: int) -> dict:
    """Latency (put, then flush: the receiver has it) on `lat_ch`; throughput of a stream on `stream_ch`."""
    lat = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        lat_ch.put(x, 60.0)
        lat_ch.flush(60.0)
        if i >= 2:  # warm-up
            lat.append(time.perf_counter() - t0)
    rates = []
    n = stream * (SMALL_STREAM_FACTOR if x.numel() < 1024 else 1)
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            stream_ch.put(x, 60.0)
        stream_ch.flush(60.0)
        rates.append(n * x.numel() * 4 / (time.perf_counter() - t0))
    return {"latency_ms": 1e3 * statistics.median(lat), "mb_per_s": statistics.median(rates) / 1e6,
            "bytes": x.numel() * 4}


def _rpc_side(rank: int, port: int, reps: int, stream: int, results) -> None:
    from sedona_runtime.pipeline import rendezvous
    from sedona_runtime.pipeline.channel import EndOfStream
    from sedona_runtime.pipeline.rpc_channel import RpcRecvChannel, RpcSendChannel
    from sedona_runtime.pipeline.rpc_runtime import start_rpc, stop_rpc

    torch.set_num_threads(1)
    rendezvous.use_interface(rendezvous.loopback_interface())
    init = rendezvous.init_method_for(rendezvous.connect_store("127.0.0.1", port, 2, 60.0))
    if rank == 1:
        recv = RpcRecvChannel("bench", depth=2)
        start_rpc("recv", 1, 2, init, device=torch.device("cpu"))
        try:
            while True:
                recv.get(120.0)
        except EndOfStream:
            pass
        stop_rpc(graceful=True)
        return
    start_rpc("send", 0, 2, init, device=torch.device("cpu"))
    out = {}
    for name, shape in SHAPES.items():
        out[name] = _time_channel(RpcSendChannel("recv", "bench", window=1), RpcSendChannel("recv", "bench", window=2),
                                  torch.randn(shape), reps, stream)
    RpcSendChannel("recv", "bench").close(60.0)
    stop_rpc(graceful=True)
    results.update({"rpc": out})


def _p2p_side(rank: int, port: int, reps: int, stream: int, results) -> None:
    from sedona_runtime.pipeline import p2p_group, rendezvous
    from sedona_runtime.pipeline.channel import EndOfStream
    from sedona_runtime.pipeline.p2p_channel import Edge, P2pRecvChannel, P2pSendChannel

    torch.set_num_threads(1)
    rendezvous.use_interface(rendezvous.loopback_interface())
    store = rendezvous.connect_store("127.0.0.1", port, 2, 60.0)
    p2p_group.join(store, rank, 2, 120.0, [])
    if rank == 1:
        recv = P2pRecvChannel(Edge(0, "send", timeout=120.0), depth=2, device=torch.device("cpu"))
        try:
            while True:
                recv.get(120.0)
        except EndOfStream:
            pass
        p2p_group.leave()
        return
    out = {}
    ch = P2pSendChannel(Edge(1, "recv", timeout=120.0), window=2)
    for name, shape in SHAPES.items():
        out[name] = _time_channel(ch, ch, torch.randn(shape), reps, stream)
    ch.close(60.0)
    p2p_group.leave()
    results.update({"p2p": out})


def _gloo_side(rank: int, port: int, reps: int, stream: int, results) -> None:
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, 2, False)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    ack = torch.zeros(1)
    out = {}
    for name, shape in SHAPES.items():
        x = torch.randn(shape) if rank == 0 else torch.empty(shape)
        lat, rates = [], []
        for i in range(reps + 2):
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(x, 1)
                dist.recv(ack, 1)
            else:
                dist.recv(x, 0)
                dist.send(ack, 0)
            if i >= 2:
                lat.append(time.perf_counter() - t0)
        n = stream * (SMALL_STREAM_FACTOR if x.numel() < 1024 else 1)
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                dist.send(x, 1) if rank == 0 else dist.recv(x, 0)
            if rank == 0:
                dist.recv(ack, 1)
            else:
                dist.send(ack, 0)
            rates.append(n * x.numel() * 4 / (time.perf_counter() - t0))
        out[name] = {"latency_ms": 1e3 * statistics.median(lat), "mb_per_s": statistics.median(rates) / 1e6,
                     "bytes": x.numel() * 4}
    dist.destroy_process_group()
    if rank == 0:
        results.update({"gloo": out})


SIDES = {"rpc": _rpc_side, "p2p": _p2p_side, "gloo": _gloo_side}


def _entry(rank: int, which: str, port: int, reps: int, stream: int, results) -> None:
    SIDES[which](rank, port, reps, stream, results)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20, help="latency repetitions per message size")
    p.add_argument("--stream", type=int, default=10, help="messages per throughput run")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    from sedona_runtime.pipeline import rendezvous

    with mp.Manager() as manager:
        results = manager.dict()
        for which in SIDES:
            sock = rendezvous.listen_loopback(0)  # each pair meets at a store served here, on loopback
            port = sock.getsockname()[1]
            store = rendezvous.serve_store(sock, 2, 120.0)
            print(f"measuring {which} ...", file=sys.stderr, flush=True)
            mp.spawn(_entry, args=(which, port, args.reps, args.stream, results), nprocs=2, join=True)
            del store
        res = dict(results)
    print(f"{'transport':<10} {'message':<30} {'latency (median)':>18} {'throughput (median)':>20} {'messages/s':>11}")
    for which in SIDES:
        for name, r in res[which].items():
            r["messages_per_s"] = r["mb_per_s"] * 1e6 / r["bytes"]
            print(f"{which:<10} {name:<30} {r['latency_ms']:>15.3f} ms {r['mb_per_s']:>15.1f} MB/s "
                  f"{r['messages_per_s']:>11.0f}")
    big = next(iter(SHAPES))
    for which in ("rpc", "p2p"):
        print(f"{which} / gloo, {big}: latency x{res[which][big]['latency_ms'] / res['gloo'][big]['latency_ms']:.2f}, "
              f"throughput x{res[which][big]['mb_per_s'] / res['gloo'][big]['mb_per_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**res, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
