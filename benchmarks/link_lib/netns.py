"""Two network namespaces joined by one veth pair whose rate tc limits; created, changed and always removed.

Only addresses inside the two namespaces this benchmark creates are used (10.231.0.1 and .2 by default):
the pair has no end in the host's namespace, so no packet can leave them.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from sedona_runtime.utils.errors import SedonaError

_RATE = re.compile(r"^(\d+(?:\.\d+)?)(gbit|mbit|kbit)$")
_SCALE = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3}


def rate_bits(rate: str) -> float:
    """'10gbit' -> 1e10 bits/s; tc's own spelling, so the same string goes to tc unchanged."""
    m = _RATE.match(rate.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise SedonaError(f"link rate {rate!r}: write it as tc does, e.g. 10gbit, 1gbit, 200mbit")
    return float(m.group(1)) * _SCALE[m.group(2)]


def tbf_args(dev: str, rate: str) -> list[str]:
    """`tc qdisc replace` of a token bucket on `dev`: `rate`, a burst of 1/100 s of it (at least 64 KiB: tbf
    needs more than one timer tick's bytes at the rate, or it cannot reach it), queueing at most 50 ms."""
    burst = max(64 * 1024, int(rate_bits(rate) / 8 / 100))
    return ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate.lower(), "burst", str(burst),
            "latency", "50ms"]


@dataclass(frozen=True)
class Pair:
    """Names and addresses of one benchmark's two namespaces ("hosts" a and b) and their veth ends."""

    tag: str
    subnet: str = "10.231.0"

    @property
    def ns(self) -> tuple[str, str]:
        return (f"sedlink-{self.tag}-a", f"sedlink-{self.tag}-b")

    @property
    def dev(self) -> tuple[str, str]:
        return (f"sl{self.tag}a"[:15], f"sl{self.tag}b"[:15])  # IFNAMSIZ: 15 characters

    @property
    def addr(self) -> tuple[str, str]:
        return (f"{self.subnet}.1", f"{self.subnet}.2")

    def setup_commands(self) -> list[list[str]]:
        (na, nb), (da, db), (aa, ab) = self.ns, self.dev, self.addr
        return [
            ["ip", "netns", "add", na], ["ip", "netns", "add", nb],
            ["ip", "link", "add", da, "netns", na, "type", "veth", "peer", "name", db, "netns", nb],
            ["ip", "-n", na, "addr", "add", f"{aa}/24", "dev", da],
            ["ip", "-n", nb, "addr", "add", f"{ab}/24", "dev", db],
            ["ip", "-n", na, "link", "set", da, "up"], ["ip", "-n", nb, "link", "set", db, "up"],
            ["ip", "-n", na, "link", "set", "lo", "up"], ["ip", "-n", nb, "link", "set", "lo", "up"],
        ]

    def rate_commands(self, rate: str) -> list[list[str]]:
        """Limit both directions: each end's egress."""
        return [["ip", "netns", "exec", ns, *tbf_args(dev, rate)] for ns, dev in zip(self.ns, self.dev)]

    def teardown_commands(self) -> list[list[str]]:
        return [["ip", "netns", "del", ns] for ns in self.ns]  # deleting a namespace deletes its veth end

    def exec_prefix(self, host: int, cores: str) -> list[str]:
        """Run a command in host `host`'s namespace on `cores` (taskset list, e.g. '0')."""
        return ["ip", "netns", "exec", self.ns[host], "taskset", "-c", cores]


def sh(cmd: list[str], timeout: float = 30.0) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SedonaError(f"{' '.join(cmd)}: {exc}") from None
    if proc.returncode != 0:
        raise SedonaError(f"{' '.join(cmd)}: {proc.stderr.strip() or 'exit ' + str(proc.returncode)}")


def create(pair: Pair) -> None:
    """Make the two namespaces and their link; root only. Removes what it made if a step fails."""
    if os.geteuid() != 0:
        raise SedonaError("benchmarks/link.py makes network namespaces: run it as root")
    try:
        for cmd in pair.setup_commands():
            sh(cmd)
    except SedonaError:
        remove(pair)
        raise


def remove(pair: Pair) -> None:
    """Delete both namespaces (and so the veth pair); quiet about ones already gone."""
    for cmd in pair.teardown_commands():
        subprocess.run(cmd, capture_output=True, timeout=30)
