"""torchrun entry point of the pipelined greedy trainer (see sedona_runtime.cli.greedy)."""
from sedona_runtime.cli.greedy import main

if __name__ == "__main__":  # DataLoader's spawned workers import this file again: they must not run it
    raise SystemExit(main())
