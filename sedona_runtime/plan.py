"""`python -m sedona_runtime.plan`: thin shim over sedona_runtime.cli.plan.main."""
import sys

from sedona_runtime.cli.plan import main

if __name__ == "__main__":
    sys.exit(main())
