"""One process of the p2p channel test's pair: `python p2p_pair.py RANK PORT OUT_JSON` (run by the test).

A plain subprocess rather than multiprocessing, whose resource tracker would outlive the test as a
child of the test process.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SCENARIOS = ("order", "backpressure", "error")


def _side(rank: int, port: int) -> object:
    """Join the group once, then play every scenario on fresh channels: {scenario: what this side saw}."""
    try:
        from sedona_runtime.pipeline import p2p_group, rendezvous

        torch.set_num_threads(1)
        rendezvous.use_interface(rendezvous.loopback_interface())
        store = rendezvous.connect_store("127.0.0.1", port, 2, 30.0)
        p2p_group.join(store, rank, 2, 30.0, [])
        return {s: _run(rank, store, s) for s in SCENARIOS}
    except BaseException:  # noqa: BLE001 - the test prints it
        return traceback.format_exc()


def _run(rank: int, store, scenario: str):
    import time

    from sedona_runtime.pipeline.channel import ChannelTimeout, EndOfStream, PeerError
    from sedona_runtime.pipeline.messages import Batch, Marker
    from sedona_runtime.pipeline.p2p_channel import Edge, P2pRecvChannel, P2pSendChannel

    if rank == 0:
        out = P2pSendChannel(Edge(1, "receiver", timeout=30.0), window=1 if scenario == "backpressure" else 2)
        if scenario == "order":
            for i in range(40):
                out.put(Batch(i, torch.full((3, 4), float(i)), torch.arange(3) + i), 10.0)
                if i % 10 == 9:
                    out.put(Marker("checkpoint", i + 1), 10.0)
            # An item whose pickled header is longer than one header message.
            out.put(Marker("x" * 5000, 99), 10.0)
            out.close(10.0)
            return "sent"
        if scenario == "backpressure":
            for i in range(3):  # 2 fill the receiver's queue, 1 is in the sending thread, blocked
                out.put(i, 5.0)
            t0 = time.monotonic()
            try:
                out.put(3, 0.5)   # the window is full and the receiver takes nothing: times out
                verdict = "not blocked"
            except ChannelTimeout:
                verdict = f"blocked {time.monotonic() - t0:.2f}"
            store.set("sender-checked", "1")  # only now does the receiver start taking items
            out.put(3, 10.0)
            out.close(10.0)
            return verdict
        if scenario == "error":
            out.put("ok", 5.0)
            out.fail("block1", "ValueError: bad batch")
            return "failed"
    inbox = P2pRecvChannel(Edge(0, "sender", timeout=30.0), depth=2, device=torch.device("cpu"))
    got = []
    if scenario == "backpressure":
        store.wait(["sender-checked"])
    try:
        while True:
            got.append(inbox.get(10.0))
    except EndOfStream:
        pass
    except PeerError as exc:
        got.append(f"PeerError: {exc}")
    if scenario == "order":
        batches = [g for g in got if isinstance(g, Batch)]
        ok = [b.step for b in batches] == list(range(40)) and all(
            torch.equal(b.x, torch.full((3, 4), float(b.step))) and torch.equal(b.y, torch.arange(3) + b.step)
            for b in batches)
        markers = [(m.kind, m.step) for m in got if isinstance(m, Marker)]
        return {"batches_in_order": ok, "markers": markers[:4], "long": markers[-1] == ("x" * 5000, 99),
                "positions": [i for i, g in enumerate(got) if isinstance(g, Marker)][:4]}
    return got




if __name__ == "__main__":
    rank, port, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    out.write_text(json.dumps(_side(rank, port)))
