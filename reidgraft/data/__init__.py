"""Datasets by name (torchreid's Market-1501 and DukeMTMC-reID, our synthetic one; CIFAR-10/100
and digits for classification) and the loaders that feed K models, each with its own order and
augmentation."""

from .classification import CLASSIFICATION_DATASETS, ClassificationData, load_classification_dataset
from .datasets import DATASETS, DataMissingError, ReidSplits, load_reid_dataset
from .loaders import ImageListDataset, build_test_loader, build_train_loaders, read_rgb

__all__ = [
    "CLASSIFICATION_DATASETS",
    "ClassificationData",
    "DATASETS",
    "DataMissingError",
    "ImageListDataset",
    "ReidSplits",
    "build_test_loader",
    "build_train_loaders",
    "load_classification_dataset",
    "load_reid_dataset",
    "read_rgb",
]
