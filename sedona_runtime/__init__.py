"""sedona-runtime: pipeline-parallel greedy block-wise training and the SEDONA decoupling search."""
import logging

__version__ = "0.1.0"

# Library code logs through `logging`; entry points decide where it goes.
logging.getLogger(__name__).addHandler(logging.NullHandler())
