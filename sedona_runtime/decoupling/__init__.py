"""Decouplings: where a network is cut into gradient-isolated blocks and which auxiliary head each gets."""
from sedona_runtime.decoupling.baselines import backprop_decoupling, baseline_decoupling, uniform_decoupling
from sedona_runtime.decoupling.discretize import discretize, rank_boundaries, rediscretize
from sedona_runtime.decoupling.resolve import list_shipped, load_decoupling, resolve_decoupling
from sedona_runtime.decoupling.retarget import retarget
from sedona_runtime.decoupling.schema import BlockSpec, Decoupling, read_decoupling, save_decoupling, validate, validate_for

__all__ = [
    "BlockSpec",
    "Decoupling",
    "backprop_decoupling",
    "baseline_decoupling",
    "discretize",
    "list_shipped",
    "load_decoupling",
    "rank_boundaries",
    "read_decoupling",
    "rediscretize",
    "resolve_decoupling",
    "retarget",
    "save_decoupling",
    "uniform_decoupling",
    "validate",
    "validate_for",
]
