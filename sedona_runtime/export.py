"""`python -m sedona_runtime.export`: shim calling sedona_runtime.cli.export.main."""
from sedona_runtime.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
