"""Datasets by name in one registry (`registry.py`: torchreid's Market-1501, DukeMTMC-reID,
CUHK03 and MSMT17, any folder in Market-1501 naming, our synthetic set; CIFAR-10/100 and digits
for classification), what a loaded re-ID dataset is (`splits.py`), and the loaders that feed K
models, each with its own order and augmentation (`loaders.py`, `classification.py`).

Names are loaded from their module on first use: `ClassificationData`'s imports torchvision's
datasets, the loaders torch and torchvision."""

from __future__ import annotations

from ..lazy import lazy_names

# public name -> the module of this package that defines it, loaded on first use (PEP 562): the
# config reads the registry without loading torch and torchvision behind the loaders
_EXPORTS = {
    "ImageListDataset": "loaders",
    "build_test_loader": "loaders",
    "build_train_loaders": "loaders",
    "read_rgb": "loaders",
    "CLASSIFICATION": "registry",
    "DATASETS": "registry",
    "DEFAULT_DATASET": "registry",
    "REID": "registry",
    "DatasetSpec": "registry",
    "dataset_names": "registry",
    "dataset_spec": "registry",
    "load_classification_dataset": "registry",
    "load_dataset": "registry",
    "load_reid_dataset": "registry",
    "load_run_splits": "registry",
    "DataMissingError": "splits",
    "ReidSplits": "splits",
    "ClassificationData": "classification",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
