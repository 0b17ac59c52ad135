"""`launch/greedy.py ARGS` with options added on one rank: `rank_argv.py RANK "EXTRA OPTIONS" ARGS...` (run
under torchrun by a test: a rank started with another command line than the others)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

if __name__ == "__main__":
    rank, extra, *args = sys.argv[1:]
    if os.environ.get("RANK") == rank:
        args += shlex.split(extra)
    from sedona_runtime.cli.greedy import main

    sys.exit(main(args))
