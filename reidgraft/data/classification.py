"""Image classification data for the CIFAR track: CIFAR-10/100 through torchvision from a local
folder, and `digits`, scikit-learn's bundled 8x8 handwritten digits upscaled to 32x32 (a real
dataset that needs nothing downloaded).

Images are held as uint8 arrays (N, 32, 32, 3). Loaders follow the re-ID ones: K training
loaders, each with its own order and augmentation, pure functions of (seed + k, epoch, index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from .loaders import EpochShuffle, _loader, sample_key, transformed
from .splits import DataMissingError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
AUGMENTATIONS = ("random_crop", "random_flip")


def check_augment(augment) -> None:
    """ValueError naming the first augmentation classification does not know."""
    unknown = [name for name in augment if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown transform {unknown[0]!r} for classification; choose from {', '.join(AUGMENTATIONS)}"
        )


@dataclass(frozen=True)
class CifarLayout:
    """Where torchvision expects an extracted python-version CIFAR archive, and its files."""

    folder: str
    archive: str
    files: tuple[str, ...]
    num_classes: int
    torchvision_class: str


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py", "cifar-10-python.tar.gz",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
         "batches.meta"),
        10, "CIFAR10",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python", "cifar-100-python.tar.gz", ("train", "test", "meta"), 100, "CIFAR100"
    ),
}  # fmt: skip

# Per-channel mean and standard deviation of each training set (RGB, 0..1).
NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "digits": ((0.3055,) * 3, (0.3234,) * 3),
}
DIGITS_TEST_FRACTION = 0.25  # 1347 train / 450 test images, stratified, fixed seed
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class ClassificationData:
    name: str
    train_images: np.ndarray  # (N, 32, 32, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return NORMALISATION[self.name]


def load_classification_data(name: str, root: str | Path, download: bool = False) -> ClassificationData:
    """A classification dataset the registry names (use `registry.load_classification_dataset`);
    CIFAR from `root` (torchvision's layout)."""
    if name == "digits":
        return _digits()
    return _cifar(name, Path(root).expanduser(), download)


def check_classification_data(name: str, root: str | Path, download: bool = False) -> None:
    """DataMissingError unless CIFAR's files are under `root` (or may be downloaded); digits ship
    with scikit-learn."""
    if name == "digits" or download:
        return
    layout = CIFAR_LAYOUTS[name]
    folder = Path(root).expanduser() / layout.folder
    missing = [file for file in layout.files if not (folder / file).is_file()]
    if missing:
        raise DataMissingError(
            f"{name} not found: {folder} lacks {', '.join(missing)}; extract the python version "
            f"({layout.archive}, {CIFAR_URL}) under {root}, or pass --download to let torchvision fetch it"
        )


def _cifar(name: str, root: Path, download: bool) -> ClassificationData:
    import torchvision.datasets

    layout = CIFAR_LAYOUTS[name]
    check_classification_data(name, root, download)
    dataset_class = getattr(torchvision.datasets, layout.torchvision_class)
    try:
        train = dataset_class(root=str(root), train=True, download=download)
        test = dataset_class(root=str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision's integrity check, or a failed download
        raise DataMissingError(f"{name} under {root} is unusable: {error}") from None
    return ClassificationData(
        name,
        np.asarray(train.data, dtype=np.uint8),
        np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8),
        np.asarray(test.targets, dtype=np.int64),
        layout.num_classes,
    )


def _digits() -> ClassificationData:
    """scikit-learn's 1797 digits (8x8, values 0..16) as 32x32 RGB, with a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.BILINEAR)) for image in small]
    )
    images = np.repeat(images[..., None], 3, axis=3)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return ClassificationData(
        "digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10
    )


class ArrayImageDataset(Dataset):
    """(image, label, index) from uint8 arrays; augmented under per-item seeded RNGs when `seed`
    is given (as the re-ID loaders), so order and augmentation depend on (seed, epoch, index) only."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable, seed: int | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform, self.seed = images, labels, transform, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, index, _ = sample_key(key)  # (no sampler here repeats an image)
        tensor = transformed(self.transform, Image.fromarray(self.images[index]), self.seed, epoch, index)
        return tensor, int(self.labels[index]), index


def classification_transforms(data: ClassificationData, augment) -> tuple[Callable, Callable]:
    """Train (random crop 32 with padding 4, horizontal flip, as asked) and test transforms."""
    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown transform {unknown[0]!r} for classification; choose from {AUGMENTATIONS}")
    mean, std = data.normalisation
    finish = [T.ToTensor(), T.Normalize(mean, std)]
    train = []
    if "random_crop" in augment:
        train.append(T.RandomCrop(32, padding=4))
    if "random_flip" in augment:
        train.append(T.RandomHorizontalFlip())
    return T.Compose(train + finish), T.Compose(finish)


def build_classification_loaders(
    data: ClassificationData,
    *,
    count: int,
    seed: int,
    augment,
    batch_size: int,
    workers: int = 0,
    pin_memory: bool = False,
) -> list[DataLoader]:
    """`count` training loaders; loader k uses seed + k. Incomplete batches dropped."""
    if len(data.train_images) < batch_size:
        raise ValueError(
            f"the training set has {len(data.train_images)} images, fewer than one batch ({batch_size})"
        )
    train_transform, _ = classification_transforms(data, augment)
    return [
        _loader(
            ArrayImageDataset(data.train_images, data.train_labels, train_transform, seed=seed + k),
            batch_size,
            workers,
            seed + k,
            sampler=EpochShuffle(len(data.train_images), seed + k),
            drop_last=True,
            pin_memory=pin_memory,
        )  # fmt: skip
        for k in range(count)
    ]


def build_classification_test_loader(
    data: ClassificationData, *, batch_size: int, workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    _, test_transform = classification_transforms(data, [])
    return _loader(
        ArrayImageDataset(data.test_images, data.test_labels, test_transform),
        batch_size,
        workers,
        shuffle=False,
        pin_memory=pin_memory,
    )
