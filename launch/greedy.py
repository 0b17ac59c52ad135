"""torchrun entry point of the pipelined greedy trainer (see sedona_runtime.cli.greedy)."""
from sedona_runtime.cli.greedy import main

raise SystemExit(main())
