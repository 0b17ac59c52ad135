"""`python -m sedona_runtime.evaluate`: shim calling sedona_runtime.cli.evaluate.main."""
from sedona_runtime.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
