"""`python -m sedona_runtime.search`: thin shim over sedona_runtime.cli.search.main."""
import sys

from sedona_runtime.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
