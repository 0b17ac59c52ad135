"""`python -m sedona_runtime.train`: thin shim over sedona_runtime.cli.train.main."""
import sys

from sedona_runtime.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
