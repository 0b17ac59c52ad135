"""Greedy block-wise training: blocks and their runners, the single-process trainer, evaluation, run files."""
from sedona_runtime.training.block import Block, BlockRunner, NonFiniteLossError, StepResult, build_blocks
from sedona_runtime.training.config import TrainConfig, resolve_defaults
from sedona_runtime.training.resolver import resolve_run
from sedona_runtime.training.spec import RunSpec

__all__ = ["Block", "BlockRunner", "NonFiniteLossError", "RunSpec", "StepResult", "TrainConfig", "build_blocks",
           "resolve_defaults", "resolve_run"]
