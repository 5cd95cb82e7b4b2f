"""Datasets by name (torchreid's Market-1501 and DukeMTMC-reID, our synthetic one) and the
loaders that feed K models, each with its own order and augmentation."""

from .datasets import DATASETS, DataMissingError, ReidSplits, load_reid_dataset
from .loaders import ImageListDataset, build_test_loader, build_train_loaders, read_rgb

__all__ = [
    "DATASETS",
    "DataMissingError",
    "ImageListDataset",
    "ReidSplits",
    "build_test_loader",
    "build_train_loaders",
    "load_reid_dataset",
    "read_rgb",
]
