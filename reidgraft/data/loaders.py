"""Loaders for K models: one per model over the same training set, each with its own order and
augmentation, plus test loaders.

Shuffling and augmentation are pure functions of (model seed, epoch, index): the sampler draws
its permutation from a generator seeded by (seed, epoch), and each image is augmented under
RNGs seeded by (seed, epoch, index). So K loaders differ, the same run is reproducible with
any number of workers, and a resumed run sees exactly the batches it would have seen.
(torchreid's random crop draws from Python's global `random`, hence the seeding of both.)
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from .datasets import Item


class ImageReadError(OSError):
    """An image file could not be decoded; the message names the file."""


def read_rgb(path: str) -> Image.Image:
    """Open an image as RGB, or raise ImageReadError naming the file (torchreid's reader would
    retry forever)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from None


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (order matters)."""
    value = 0x5EED
    for part in parts:
        value = (value * 1_000_003 + int(part) + 0x9E3779B9) % (1 << 63)
    return value


@contextlib.contextmanager
def seeded_rngs(seed: int):
    """Seed torch's CPU RNG and Python's `random` for a block, restoring both afterwards."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


class ImageListDataset(Dataset):
    """(image, pid, camid, index) for a list of items; seeded per item when `seed` is given."""

    def __init__(self, items: Sequence[Item], transform: Callable, seed: int | None = None):
        self.items = list(items)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, pid, camid = self.items[index]
        image = read_rgb(path)
        if self.seed is None:
            tensor = self.transform(image)
        else:
            with seeded_rngs(mix_seed(self.seed, self.epoch, index)):
                tensor = self.transform(image)
        return tensor, pid, camid, index


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from (seed, epoch) alone."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


def reid_transforms(height: int, width: int, augment: Sequence[str]):
    """torchreid's train and test transforms (resize, its augmentations, ImageNet normalisation)."""
    from torchreid.reid.data.transforms import build_transforms

    with contextlib.redirect_stdout(io.StringIO()):  # it prints each transform it adds
        return build_transforms(height, width, transforms=list(augment))


def _loader(dataset: Dataset, batch_size: int, workers: int, seed: int = 0, **kwargs) -> DataLoader:
    # Its own generator: otherwise every epoch's iterator draws worker seeds from the global RNG.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def build_train_loaders(
    items: Sequence[Item],
    *,
    count: int,
    seed: int,
    height: int,
    width: int,
    augment: Sequence[str],
    batch_size: int,
    workers: int = 0,
) -> list[DataLoader]:
    """`count` loaders over the same items; loader k uses seed + k. Incomplete batches dropped."""
    if len(items) < batch_size:
        raise ValueError(f"the training set has {len(items)} images, fewer than one batch ({batch_size})")
    train_transform, _ = reid_transforms(height, width, augment)
    return [
        _loader(
            ImageListDataset(items, train_transform, seed=seed + k),
            batch_size,
            workers,
            seed + k,
            sampler=EpochShuffle(len(items), seed + k),
            drop_last=True,
        )
        for k in range(count)
    ]


def set_epoch(loaders: Sequence[DataLoader], epoch: int) -> None:
    """Make every loader draw the order and augmentation of `epoch`."""
    for loader in loaders:
        loader.sampler.epoch = epoch
        loader.dataset.epoch = epoch


def build_test_loader(
    items: Sequence[Item], *, height: int, width: int, batch_size: int, workers: int = 0
) -> DataLoader:
    """Unaugmented images in list order."""
    _, test_transform = reid_transforms(height, width, [])
    return _loader(ImageListDataset(items, test_transform), batch_size, workers, shuffle=False)
