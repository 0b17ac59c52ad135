"""`python -m sedona_runtime.search`: thin shim over sedona_runtime.cli.search.main."""
import os
import sys

# Before torch loads its OpenMP runtime: idle OpenMP threads sleep instead of spinning. The search runs
# hundreds of thousands of small ops; with spinning threads on a machine whose cores are shared, a step was
# measured 10x slower with 2 threads than with 1 (benchmarks/README.md). An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sedona_runtime.cli.search import main  # noqa: E402 - after the environment is set

if __name__ == "__main__":
    sys.exit(main())
