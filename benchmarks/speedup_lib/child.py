"""One timed pipeline run in a fresh process: `python child.py CONFIG_JSON DECOUPLING OUT_JSON`.

torch.distributed.rpc does not support joining a second group in a process that already left
one, so every pipeline measurement gets a process of its own (which also isolates the timings).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speedup_lib.measure import BenchConfig, measure_pipeline  # noqa: E402

from sedona_runtime.utils.io import atomic_write_json  # noqa: E402


def main(argv: list[str]) -> int:
    config, decoupling, out = argv
    bc = BenchConfig(**json.loads(Path(config).read_text()))
    atomic_write_json(Path(out), measure_pipeline(bc, decoupling))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
