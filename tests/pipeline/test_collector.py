"""The coordinator names the root cause when several things fail at once."""
from __future__ import annotations

import time

from sedona_runtime.pipeline.collector import CHANNEL, DIED, EXITED, RAISED, SILENT, Collector


class _NoInbox:
    def get(self, timeout):  # pragma: no cover - the collector's thread is never started here
        raise AssertionError


def _cause(failures, child=None) -> str:
    c = Collector(_NoInbox(), blocks=3)
    for severity, message in failures:
        c.fail(severity, message)
    time.sleep(0.6)  # past the grace period for a more telling report
    return c.failure(child)


def test_a_blocks_own_timeout_outranks_its_exit_code():
    # The block reports why it stopped (its input wait timed out), then exits with code 1.
    assert _cause([(CHANNEL, "block2 failed: receiving from block1 failed"),
                   (RAISED, "block1 failed: timed out after 20s waiting for the next item")],
                  child=(EXITED, "block1 (pid 7) exited with code 1")) == \
        "block1 failed: timed out after 20s waiting for the next item"


def test_a_killed_process_outranks_everything_it_caused():
    assert _cause([(SILENT, "process block2 stopped answering"), (CHANNEL, "block3 failed: channel")],
                  child=(DIED, "block2 (pid 9) was killed by SIGKILL")) == "block2 (pid 9) was killed by SIGKILL"


def test_who_failed_and_who_reported_are_data_not_parsed_names():
    """A Failure's `channel` flag ranks a transport error below a block's own; a Report's replica is a field."""
    from sedona_runtime.pipeline.channel import EndOfStream, PeerError
    from sedona_runtime.pipeline.messages import Report

    class _Inbox:
        items = [PeerError("block1 replica 1", "receiving from block2 failed", channel=True),
                 PeerError("block2", "ValueError: bad batch"), EndOfStream()]

        def get(self, timeout):
            raise self.items.pop(0)

    c = Collector(_Inbox(), blocks=2, processes=4)
    c._drain()
    assert [(s, m) for s, _, m in c.failures] == [(CHANNEL, "block1 replica 1 failed: receiving from block2 failed"),
                                                 (RAISED, "block2 failed: ValueError: bad batch")]
    c._record(Report(1, "ready", 0, replica=1))
    c._record(Report(2, "ready", 0))
    assert c.ready == {(1, 1), 2}
