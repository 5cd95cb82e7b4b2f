"""The `folder` dataset: a user's own person crops in Market-1501 layout and naming.

`--root` is the folder itself: it holds `bounding_box_train/`, `query/` and `bounding_box_test/`,
each with images named `PID_cCAM...` (e.g. `0002_c1s1_000451_03.jpg`: person 2, camera 1),
in the folder or in subfolders of it. The person id and camera come from the FILE NAME alone:
torchreid's Market1501 searches its pattern in the whole path, so a parent folder such as
`exp1_c2/` would become person 1, camera 2. Person -1 (junk) is dropped, as torchreid does;
person 0 (distractors) is kept. Train ids are relabelled 0..n-1 in ascending order.

The class is registered with torchreid's `register_image_dataset` and built through
`init_image_dataset`, so the folder takes torchreid's own path, as the public datasets do.
Nothing is written or created; every problem is one line naming the file or split.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import warnings
from pathlib import Path

from ..images import IMAGE_SUFFIXES, image_files
from .splits import SUBSETS, DataMissingError, Item, ReidSplits, make_splits

TORCHREID_NAME = "reidgraft_folder"  # the name under which torchreid knows the class
EXAMPLE_NAME = "0002_c1s1_000451_03.jpg"

# PID_cCAM, then nothing or a Market-style tail (s1_000451_03, _anything), on the file's stem only.
_NAME = re.compile(r"(-?\d+)_c(\d+)(?:[s_].*)?")


class FolderNameError(ValueError):
    """An image in a `folder` dataset whose name does not give a person id and camera."""


class FolderSplitError(ValueError):
    """A `folder` dataset split that cannot be evaluated (query identities absent from the gallery)."""


MAX_PERSON_ID = 2**31 - 1  # a larger one cannot be a label (torch's int64 labels of an int32 index)


def read_name(name: str) -> tuple[int, int] | None:
    """(person id, 0-based camera) from a Market-1501-style file name, or None when it does not
    read as one."""
    match = _NAME.fullmatch(Path(name).stem)
    if match is None or not -1 <= int(match.group(1)) <= MAX_PERSON_ID or int(match.group(2)) < 1:
        return None
    return int(match.group(1)), int(match.group(2)) - 1


def parse_name(path: Path) -> tuple[int, int]:
    """(person id, 0-based camera) from the file name of `path`; FolderNameError naming it."""
    parsed = read_name(path.name)
    if parsed is None:
        raise FolderNameError(
            f"{path}: the name does not read as PID_cCAM... (person id from -1 to {MAX_PERSON_ID}, "
            f"camera >= 1, e.g. {EXAMPLE_NAME}); rename the file or move it out of the dataset folder"
        )
    return parsed


def _read_split(folder: Path) -> list[Item]:
    """The split's images (junk, pid -1, dropped), sorted by path; DataMissingError when none."""
    images = sorted(Path(path) for path in image_files(folder))  # (linked subfolders included)
    items = [(str(path), *parse_name(path)) for path in images]  # every name checked, junk included
    kept = [item for item in items if item[1] != -1]
    if not kept:
        what = f"only junk images (pid -1), {len(items)} of them" if items else "no images"
        raise DataMissingError(
            f"folder dataset: split {folder} holds {what}; it needs crops named like {EXAMPLE_NAME} "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    return kept


def check_folder(root: Path) -> None:
    """DataMissingError unless `root` holds the three split folders (their names are read later)."""
    missing = next((root / name for name in SUBSETS if not (root / name).is_dir()), None)
    if missing is not None:
        raise DataMissingError(
            f"dataset not found: {missing} is missing; the folder dataset reads --root itself: "
            f"expected {root}/{{{','.join(SUBSETS)}}}/ with crops named like {EXAMPLE_NAME}. "
            "Point --root at your own folder in that layout. reidgraft never downloads."
        )


def read_market_named_folder(root: Path) -> tuple[list[Item], list[Item], list[Item]]:
    """Train (ids relabelled 0..n-1), query and gallery items of the folder `root`."""
    check_folder(root)
    train, query, gallery = (_read_split(root / name) for name in SUBSETS)
    gallery_pids = {pid for _, pid, _ in gallery}
    absent = sorted({pid for _, pid, _ in query} - gallery_pids)
    if absent:
        shown = ", ".join(map(str, absent[:5])) + (", ..." if len(absent) > 5 else "")
        raise FolderSplitError(
            f"folder dataset: split {root / 'query'} has {len(absent)} identities absent from the "
            f"gallery {root / 'bounding_box_test'} (pid {shown}); add their gallery images or remove "
            "those queries"
        )
    label = {pid: index for index, pid in enumerate(sorted({pid for _, pid, _ in train}))}
    return [(path, label[pid], camid) for path, pid, camid in train], query, gallery


@functools.cache
def register() -> None:
    """Register the `folder` dataset with torchreid (once per process), as `MarketNamedFolder`:
    torchreid's view of a folder, whose `root` is the folder holding the three splits. torchreid
    is imported here, not when the naming rules above are read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.data import register_image_dataset
        from torchreid.reid.data.datasets.dataset import ImageDataset

    class MarketNamedFolder(ImageDataset):
        def __init__(self, root: str = "", **kwargs):
            self.root = self.dataset_dir = str(Path(root).expanduser().resolve())
            train, query, gallery = read_market_named_folder(Path(self.dataset_dir))
            super().__init__(train, query, gallery, **kwargs)

    try:
        register_image_dataset(TORCHREID_NAME, MarketNamedFolder)
    except ValueError:  # registered already, in this process
        pass


def load_folder(root: Path) -> tuple[list, list, list]:
    """Train, query and gallery of the folder `root`, read through torchreid's dataset registry."""
    register()
    from torchreid.reid.data.datasets import init_image_dataset

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dataset = init_image_dataset(TORCHREID_NAME, root=str(root), verbose=False)
    return dataset.train, dataset.query, dataset.gallery


def load_folder_splits(root: Path) -> ReidSplits:
    """The `folder` dataset: `root` itself holds the three Market-1501 splits."""
    return make_splits("folder", *load_folder(root))
