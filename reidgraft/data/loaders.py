"""Loaders for K models: one per model over the same training set, each with its own order and
augmentation, plus test loaders.

Shuffling and augmentation are pure functions of (model seed, epoch, index): the sampler draws
its permutation from a generator seeded by (seed, epoch) and hands the dataset (epoch, index)
pairs, and each image is augmented under RNGs seeded by (seed, epoch, index). The epoch travels
with every index because the sampler runs in the main process while persistent workers keep
their own copy of the dataset, which never hears of a new epoch. So K loaders differ, the same
run is reproducible with any number of workers, and a resumed run sees exactly the batches it
would have seen.
(torchreid's random crop draws from Python's global `random`, hence the seeding of both.)
"""

from __future__ import annotations

import collections
import contextlib
import io
import random
import warnings
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..images import ImageReadError, read_rgb  # noqa: F401 (ImageReadError: also importable from here)
from .image_cache import DecodedImages
from .splits import Item

PREFETCH_BATCHES = 4  # batches each worker reads ahead


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


def transformed(
    transform: Callable, image: Image.Image, seed: int | None, epoch: int, index: int, copy: int = 0
):
    """`transform(image)`, under RNGs seeded by (seed, epoch, index) when `seed` is given; a
    second or later `copy` of an image in one batch gets its own draw."""
    if seed is None:
        return transform(image)
    with seeded_rngs(mix_seed(seed, epoch, index) if copy == 0 else mix_seed(seed, epoch, index, copy)):
        return transform(image)


def sample_key(key: int | tuple[int, ...]) -> tuple[int, int, int]:
    """(epoch, index, copy) of a dataset key: an index (epoch 0, test loaders), an (epoch, index)
    pair from a training sampler, or (epoch, index, copy) for a repeated image in a batch."""
    if isinstance(key, int):
        return 0, key, 0
    return (*key, 0) if len(key) == 2 else tuple(key)


class ImageListDataset(Dataset):
    """(image, pid, camid, index) for a list of items; seeded per item when `seed` is given.
    With a `cache` (`image_cache.DecodedImages`), the transform's leading resize is done once per
    image and kept; the rest of it runs on a copy, drawing the same random numbers."""

    def __init__(
        self,
        items: Sequence[Item],
        transform: Callable,
        seed: int | None = None,
        cache: DecodedImages | None = None,
    ):
        self.items = list(items)
        self.transform = transform
        self.seed = seed
        self.cache = cache
        if cache is not None:
            from torchvision import transforms as T

            steps = list(getattr(transform, "transforms", []))
            if not steps or not isinstance(steps[0], T.Resize):
                raise ValueError("an image cache needs a transform that starts with a Resize")
            self.resize, self.rest = steps[0], T.Compose(steps[1:])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, index, copy = sample_key(key)
        path, pid, camid = self.items[index]
        if self.cache is None:
            tensor = transformed(self.transform, read_rgb(path), self.seed, epoch, index, copy)
        else:
            tensor = transformed(self.rest, self.cache.read(path, self.resize), self.seed, epoch, index, copy)
        return tensor, pid, camid, index


class EpochShuffle(Sampler[tuple[int, int]]):
    """A permutation per epoch drawn from (seed, epoch) alone, as (epoch, index) pairs."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        epoch = self.epoch
        return iter([(epoch, index) for index in torch.randperm(self.size, generator=generator).tolist()])


def instance_chunks(count: int, instances: int) -> int:
    """How many groups of `instances` images an identity with `count` images gives per epoch (one,
    drawn with replacement, when it has fewer)."""
    return max(count, instances) // instances


class IdentitySampler(Sampler[tuple[int, int]]):
    """Batches of P identities x N images (N = `instances`), as (epoch, index) pairs in batch
    order, drawn from (seed, epoch) alone.

    Each identity's images are shuffled and cut into groups of N (an identity with fewer than N
    is sampled with replacement to N, as torchreid does). The number of batches per epoch, S, is
    the largest for which every batch can hold P distinct identities: sum(min(groups, S)) >= P*S.
    It depends only on the labels, so K models with different seeds take the same number of
    steps. Batches are filled round-robin (identities in random order, each identity's groups in
    consecutive batches), which puts an identity at most once in a batch; surplus groups and
    surplus identities of a batch are dropped at random, and the batch order is shuffled."""

    def __init__(self, labels: Sequence[int], instances: int, identities_per_batch: int, seed: int):
        self.instances, self.per_batch, self.seed, self.epoch = instances, identities_per_batch, seed, 0
        self.by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self.by_label.setdefault(int(label), []).append(index)
        if len(self.by_label) < identities_per_batch:
            raise ValueError(
                f"the training set has {len(self.by_label)} identities, fewer than a batch's "
                f"{identities_per_batch} (batch_size / num_instances); lower the batch size"
            )
        groups = sorted(instance_chunks(len(v), instances) for v in self.by_label.values())
        steps = 0
        while sum(min(g, steps + 1) for g in groups) >= identities_per_batch * (steps + 1):
            steps += 1
        self.steps = steps

    @property
    def short_identities(self) -> int:
        """Identities with fewer than N images (their groups repeat images)."""
        return sum(len(v) < self.instances for v in self.by_label.values())

    def __len__(self) -> int:
        return self.steps * self.per_batch * self.instances

    def batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x1D))

        def shuffled(values: list) -> list:
            return [values[i] for i in torch.randperm(len(values), generator=generator).tolist()]

        labels = shuffled(sorted(self.by_label))
        slots: list[list[list[int]]] = [[] for _ in range(self.steps)]
        position = 0
        for label in labels:
            images = self.by_label[label]
            if len(images) < self.instances:
                drawn = torch.randint(len(images), (self.instances,), generator=generator).tolist()
                images = [images[i] for i in drawn]
            else:
                images = shuffled(images)
            groups = [images[i : i + self.instances] for i in range(0, len(images), self.instances)]
            groups = shuffled([g for g in groups if len(g) == self.instances])[: self.steps]
            for group in groups:  # consecutive batches (mod S): distinct while groups <= S
                slots[position % self.steps].append(group)
                position += 1
        batches = []
        for slot in shuffled(slots):
            chosen = sorted(torch.randperm(len(slot), generator=generator)[: self.per_batch].tolist())
            batches.append([index for i in chosen for index in slot[i]])
        return batches

    def __iter__(self):
        """(epoch, index) keys in batch order; an image drawn again for a short identity comes
        as (epoch, index, copy), so each copy is augmented differently, as in torchreid."""
        epoch, keys = self.epoch, []
        for batch in self.batches(epoch):
            copies = collections.Counter()
            for index in batch:
                keys.append((epoch, index, copies[index]) if copies[index] else (epoch, index))
                copies[index] += 1
        return iter(keys)


# torchreid's augmentation names, and ours: `random_pad_crop` is the strong baseline's crop (pad
# 10 pixels with zeros, then crop back to the input size at random), where torchreid's
# `random_crop` enlarges by 1/8 and crops, half of the time.
TORCHREID_AUGMENTATIONS = ("random_flip", "random_crop", "random_patch", "color_jitter", "random_erase")
REID_AUGMENTATIONS = (*TORCHREID_AUGMENTATIONS, "random_pad_crop")
PAD_CROP_PIXELS = 10


def check_reid_augment(augment: Sequence[str]) -> None:
    """ValueError naming the first unknown name (torchreid silently ignores one it does not know)."""
    unknown = [name for name in augment if name not in REID_AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"unknown transform {unknown[0]!r} for re-ID; choose from {', '.join(REID_AUGMENTATIONS)}"
        )


def reid_transforms(
    height: int,
    width: int,
    augment: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
):
    """torchreid's train and test transforms (resize, its augmentations, normalisation by `mean`
    and `std`: by default torchreid's, ImageNet's, which every torchreid backbone's spec holds),
    with `random_pad_crop` placed where torchreid puts its own crop (after the flip)."""
    from torchvision import transforms as T

    # torchreid warns at import that its Cython ranking is absent; reidgraft does not use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.data.transforms import build_transforms

    check_reid_augment(augment)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints each transform it adds
        normalisation = {"norm_mean": list(mean), "norm_std": list(std)} if mean is not None else {}
        train, test = build_transforms(
            height, width, transforms=[n for n in augment if n in TORCHREID_AUGMENTATIONS], **normalisation
        )
    if "random_pad_crop" in augment:
        steps = list(train.transforms)
        after = max(i for i, step in enumerate(steps) if isinstance(step, (T.Resize, T.RandomHorizontalFlip)))
        steps[after + 1 : after + 1] = [T.Pad(PAD_CROP_PIXELS), T.RandomCrop((height, width))]
        train = T.Compose(steps)
    return train, test


def _loader(
    dataset: Dataset, batch_size: int, workers: int, seed: int = 0, *, pin_memory: bool = False, **kwargs
) -> DataLoader:
    """A DataLoader with its own generator (otherwise every epoch's iterator draws worker seeds
    from the global RNG); workers stay alive between epochs and read ahead. `pin_memory` only
    for a CUDA run: page-locked buffers help host-to-GPU copies and cost a CPU run."""
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=PREFETCH_BATCHES)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
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
    pin_memory: bool = False,
    sampler: str = "random",
    num_instances: int = 4,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache: DecodedImages | None = None,
) -> list[DataLoader]:
    """`count` loaders over the same items; loader k uses seed + k. `sampler` random: shuffled
    images, incomplete batches dropped; identity: P = batch_size / num_instances identities of
    num_instances images each (`IdentitySampler`). Images are normalised by the backbone's `mean`
    and `std` (default ImageNet's); `cache` keeps them decoded (main-process loading only)."""
    if len(items) < batch_size:
        raise ValueError(f"the training set has {len(items)} images, fewer than one batch ({batch_size})")
    train_transform, _ = reid_transforms(height, width, augment, mean=mean, std=std)

    def order(seed: int) -> Sampler:
        if sampler == "identity":
            labels = [pid for _, pid, _ in items]
            return IdentitySampler(labels, num_instances, batch_size // num_instances, seed)
        return EpochShuffle(len(items), seed)

    return [
        _loader(
            ImageListDataset(items, train_transform, seed=seed + k, cache=cache),
            batch_size,
            workers,
            seed + k,
            sampler=order(seed + k),
            drop_last=True,
            pin_memory=pin_memory,
        )
        for k in range(count)
    ]


def set_epoch(loaders: Sequence[DataLoader], epoch: int) -> None:
    """Make every loader draw the order and augmentation of `epoch`."""
    for loader in loaders:
        loader.sampler.epoch = epoch


def build_test_loader(
    items: Sequence[Item],
    *,
    height: int,
    width: int,
    batch_size: int,
    workers: int = 0,
    pin_memory: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    cache: DecodedImages | None = None,
) -> DataLoader:
    """Unaugmented images in list order, normalised by `mean` and `std` (default ImageNet's);
    `cache` keeps them decoded (main-process loading only)."""
    _, test_transform = reid_transforms(height, width, [], mean=mean, std=std)
    return _loader(
        ImageListDataset(items, test_transform, cache=cache),
        batch_size,
        workers,
        shuffle=False,
        pin_memory=pin_memory,
    )
