"""Command-line entry points: the only modules that parse arguments and write to the screen."""
