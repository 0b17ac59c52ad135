"""Trained runs: rebuild a run directory's network with its best or last weights, export it, evaluate it."""
