"""Auxiliary heads (the SEDONA pool aux1..aux4, DGL's mlp_sr, PredSim) and the networks' own classifiers."""
from sedona_runtime.heads.base import Head, HeadSpec
from sedona_runtime.heads.registry import AUX_POOL, build_head, head_width_for, list_heads, register_head

__all__ = ["AUX_POOL", "Head", "HeadSpec", "build_head", "head_width_for", "list_heads", "register_head"]
