"""Datasets by name in one registry (`registry.py`: torchreid's Market-1501, DukeMTMC-reID,
CUHK03 and MSMT17, any folder in Market-1501 naming, our synthetic set; CIFAR-10/100 and digits
for classification), what a loaded re-ID dataset is (`splits.py`), and the loaders that feed K
models, each with its own order and augmentation (`loaders.py`, `classification.py`).

`ClassificationData` is loaded on first use: its module imports torchvision's datasets."""

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
from .splits import DataMissingError, ReidSplits

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


def __getattr__(name: str):
    if name == "ClassificationData":
        from .classification import ClassificationData

        return ClassificationData
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
