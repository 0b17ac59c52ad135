"""Data sets (embedded digits, CIFAR, ImageFolder, synthetic), augmentation and deterministic batches."""
from sedona_runtime.data.augment import Augment, make_augment
from sedona_runtime.data.base import ImageDataset, TensorImageDataset
from sedona_runtime.data.build import DataBundle, build_data, stem_for_size
from sedona_runtime.data.config import DataConfig
from sedona_runtime.data.preprocess import Preprocess, RawBatch
from sedona_runtime.data.stream import BatchStream, eval_batches, eval_raw_batches, normalize

__all__ = [
    "Augment",
    "BatchStream",
    "DataBundle",
    "DataConfig",
    "ImageDataset",
    "Preprocess",
    "RawBatch",
    "TensorImageDataset",
    "build_data",
    "eval_batches",
    "eval_raw_batches",
    "make_augment",
    "normalize",
    "stem_for_size",
]
