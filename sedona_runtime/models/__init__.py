"""The layered model zoo: networks as ordered layers (split points between them) plus a final head."""
from sedona_runtime.models.layered import LayeredNet, layer_output_shapes
from sedona_runtime.models.registry import ModelConfig, build_model, list_models, register_model
from sedona_runtime.models.wrap import to_layered

__all__ = ["LayeredNet", "ModelConfig", "build_model", "layer_output_shapes", "list_models", "register_model",
           "to_layered"]
