"""What a re-ID dataset is once loaded: its train, query and gallery items, and the error that
says a dataset is missing. Every dataset loader (`datasets.py`, `folder.py`) builds these."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..files import Fingerprint

Item = tuple[str, int, int]  # image path, person id, camera index (0-based)
SUBSETS = ("bounding_box_train", "query", "bounding_box_test")
# The camera of an image whose camera is not known (a folder per person, a CSV list without
# cameras): evaluation counts every other image of the query's person as a match (the value of
# evaluation.retrieval.UNKNOWN_CAMERA; the two layers import nothing of each other).
UNKNOWN_CAMERA = -1


class DataMissingError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


@dataclass(frozen=True)
class ReidSplits:
    """Train items (pids relabelled 0..n-1), query and gallery items (original pids)."""

    name: str
    train: list[Item]
    query: list[Item]
    gallery: list[Item]

    # for the synthetic set: the parameters it was generated with, and its manifest's hash
    generator: dict[str, Any] | None = None
    # the dataset options it was read with (cuhk03's boxes and split: same names, other images)
    options: dict[str, Any] | None = None

    @property
    def num_train_pids(self) -> int:
        return len({pid for _, pid, _ in self.train})

    def fingerprint(self) -> dict[str, Any]:
        """What a run records about its data, to tell later whether other data is the same: the
        image counts and a hash of every item (path below the dataset's folder, pid, camera)."""
        every = [(split, item) for split in ("train", "query", "gallery") for item in getattr(self, split)]
        base = os.path.commonpath([path for _, (path, _, _) in every]) if every else ""
        listing = Fingerprint()
        for split, (path, pid, camid) in every:
            listing.add(f"{split}\t{os.path.relpath(path, base)}\t{pid}\t{camid}\n")
        found = {
            "dataset": self.name,
            "images": {"train": len(self.train), "query": len(self.query), "gallery": len(self.gallery)},
            "items_sha256": listing.hex(),
        }
        found |= {"options": self.options} if self.options else {}
        return found | ({"generator": self.generator} if self.generator else {})


def make_splits(name: str, train, query, gallery) -> ReidSplits:
    """Splits from torchreid-style item lists (path, pid, camid, ...): sorted by path, train ids
    relabelled 0..n-1 when they are not already."""

    # torchreid lists files in glob order; sort so every run sees the same order.
    def items(data):
        return sorted((str(path), int(pid), int(camid)) for path, pid, camid, *_ in data)

    train = items(train)
    pids = sorted({pid for _, pid, _ in train})
    if pids != list(range(len(pids))):  # list files may hold other ids; the classifier needs 0..n-1
        label = {pid: index for index, pid in enumerate(pids)}
        train = [(path, label[pid], camid) for path, pid, camid in train]
    return ReidSplits(name, train, items(query), items(gallery))
