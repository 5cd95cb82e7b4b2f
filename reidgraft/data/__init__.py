"""Datasets by name in one registry (`registry.py`: torchreid's Market-1501, DukeMTMC-reID, CUHK03
and MSMT17, any folder in Market-1501 naming, our synthetic set; CIFAR-10/100 and digits for
classification), and the loaders that feed K models,
each with its own order and augmentation."""

from .classification import ClassificationData
from .datasets import DataMissingError, ReidSplits
from .loaders import ImageListDataset, build_test_loader, build_train_loaders, read_rgb
from .registry import (
    CLASSIFICATION,
    DATASETS,
    DEFAULT_DATASET,
    REID,
    DatasetSpec,
    dataset_names,
    dataset_spec,
    load_classification_dataset,
    load_dataset,
    load_reid_dataset,
    load_run_splits,
)

__all__ = [
    "CLASSIFICATION",
    "ClassificationData",
    "DATASETS",
    "DEFAULT_DATASET",
    "DataMissingError",
    "DatasetSpec",
    "ImageListDataset",
    "REID",
    "ReidSplits",
    "build_test_loader",
    "build_train_loaders",
    "dataset_names",
    "dataset_spec",
    "load_classification_dataset",
    "load_dataset",
    "load_reid_dataset",
    "load_run_splits",
    "read_rgb",
]
