"""Greedy block-wise training: blocks and their runners, the single-process trainer, evaluation, run files."""
from sedona_runtime.training.block import Block, BlockRunner, NonFiniteLossError, StepResult, build_blocks
from sedona_runtime.training.config import TrainConfig, resolve_defaults

__all__ = ["Block", "BlockRunner", "NonFiniteLossError", "StepResult", "TrainConfig", "build_blocks",
           "resolve_defaults"]
