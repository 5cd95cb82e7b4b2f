"""Validation data carved out of the training data, so that the best epoch and the best of K
models can be chosen without looking at the test set.

Re-ID: N training identities are held out whole and split as a test set is: for each identity,
the first image of each camera is a query and the rest are its gallery (Market-1501's
query/gallery shape; without camera ids, the first image and the rest). Classification: N
training images per class are held out. Which ones is
fixed (seed 0), so every run and every replicate of a comparison validates on the same data.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .classification import ClassificationData
from .splits import UNKNOWN_CAMERA, ReidSplits

VALIDATION_SEED = 0


def hold_out_identities(splits: ReidSplits, count: int) -> tuple[ReidSplits, ReidSplits]:
    """(training splits without `count` identities, relabelled 0..n-1; validation splits whose
    query and gallery are those identities). ValueError when too few identities would remain."""
    pids = sorted({pid for _, pid, _ in splits.train})
    if not 0 < count <= len(pids) - 2:
        raise ValueError(
            f"val_ids {count}: {splits.name} has {len(pids)} training identities, so hold out "
            f"1 to {len(pids) - 2} (at least 2 must stay to train on)"
        )
    held = set(np.random.default_rng(VALIDATION_SEED).choice(pids, size=count, replace=False).tolist())
    kept = [pid for pid in pids if pid not in held]
    relabel = {pid: label for label, pid in enumerate(kept)}
    train = [(path, relabel[pid], camid) for path, pid, camid in splits.train if pid in relabel]
    query, gallery, seen = [], [], set()
    for path, pid, camid in splits.train:  # sorted by path: the same choice on every machine
        if pid in held:
            (gallery if (pid, camid) in seen else query).append((path, pid, camid))
            seen.add((pid, camid))
    unknown_camera_gallery = {pid for _, pid, camid in gallery if camid == UNKNOWN_CAMERA}
    if not any(len({c for p, c in seen if p == pid}) > 1 or pid in unknown_camera_gallery for pid in held):
        raise ValueError(
            f"val_ids {count}: no held-out identity of {splits.name} was seen by two cameras (or, "
            "without camera ids, has two images), so no validation query has a match; hold out more "
            "identities"
        )
    return (
        dataclasses.replace(splits, train=train),
        ReidSplits(f"{splits.name} validation", [], query, gallery),
    )


def hold_out_images(
    data: ClassificationData, per_class: int
) -> tuple[ClassificationData, ClassificationData]:
    """(training data without `per_class` images of each class; those images as the test set of
    a validation set). ValueError when a class would keep fewer than one image."""
    labels = data.train_labels
    smallest = int(np.bincount(labels, minlength=data.num_classes).min())
    if not 0 < per_class < smallest:
        raise ValueError(
            f"val_ids {per_class}: {data.name}'s smallest class has {smallest} training images, "
            f"so hold out 1 to {smallest - 1} per class"
        )
    rng = np.random.default_rng(VALIDATION_SEED)
    held = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
            for c in range(data.num_classes)
        ]
    )
    held.sort()
    kept = np.setdiff1d(np.arange(len(labels)), held)
    train = dataclasses.replace(data, train_images=data.train_images[kept], train_labels=labels[kept])
    validation = dataclasses.replace(
        data, train_images=data.train_images[:0], train_labels=labels[:0],
        test_images=data.train_images[held], test_labels=labels[held],
    )  # fmt: skip
    return train, validation
