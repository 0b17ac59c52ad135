"""Throughput-aware planning: cost models, predicted pipeline speedup, exact cut search and Pareto fronts."""
from sedona_runtime.planning.cost_model import BACKWARD_FACTOR, CostModel, from_flops, from_layer_macs
from sedona_runtime.planning.dp import Cut, CutProblem, max_speedup
from sedona_runtime.planning.pareto import pareto_front
from sedona_runtime.planning.predict import Prediction, ideal_speedup, predict, predicted_speedup
from sedona_runtime.planning.profile import PROFILE_SCHEMA, from_profile

__all__ = [
    "BACKWARD_FACTOR",
    "CostModel",
    "Cut",
    "CutProblem",
    "PROFILE_SCHEMA",
    "Prediction",
    "from_flops",
    "from_layer_macs",
    "from_profile",
    "ideal_speedup",
    "max_speedup",
    "pareto_front",
    "predict",
    "predicted_speedup",
]
