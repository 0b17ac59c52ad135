"""Pieces of benchmarks/link.py: network namespaces and their link (netns.py), the node commands (commands.py)."""
