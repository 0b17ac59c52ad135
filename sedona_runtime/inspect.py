"""`python -m sedona_runtime.inspect`: shim calling sedona_runtime.cli.inspect.main."""
from sedona_runtime.cli.inspect import main

if __name__ == "__main__":
    raise SystemExit(main())
