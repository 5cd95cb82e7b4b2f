"""The `folder` dataset: a user's own person crops, in one of the layouts people have.

Split already (`--root` holds `bounding_box_train/`, `query/` and `bounding_box_test/`), each
with images named `PID_cCAM...` (e.g. `0002_c1s1_000451_03.jpg`: person 2, camera 1), in the
folder or in subfolders of it. The person id and camera come from the FILE NAME alone:
torchreid's Market1501 searches its pattern in the whole path, so a parent folder such as
`exp1_c2/` would become person 1, camera 2. Person -1 (junk) is dropped, as torchreid does;
person 0 (distractors) is kept. Train ids are relabelled 0..n-1 in ascending order.

One pile, split by identity with `--split SHARE` (`split_pile`, seeded by `--split-seed`):
- a folder per person (ImageFolder style: `ROOT/<person>/<any path>.jpg`), cameras unknown;
- a CSV list (`--root list.csv`, header `path,person` or `path,person,camera`, paths relative
  to the list's folder, cameras numbered from 1);
- Market-named crops in ROOT without the split folders (cameras from the names).
Persons named by folders or lists become ids 1..N in the order of their sorted names. Without
cameras every image of the query's person in the gallery is a match (`UNKNOWN_CAMERA`).

The class is registered with torchreid's `register_image_dataset` and built through
`init_image_dataset`, so the folder takes torchreid's own path, as the public datasets do.
Nothing is written or created; every problem is one line naming the file or split.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import random
import re
import warnings
from pathlib import Path

from ..images import IMAGE_SUFFIXES, image_files
from .splits import SUBSETS, UNKNOWN_CAMERA, DataMissingError, Item, ReidSplits, make_splits

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


LAYOUTS = ("split folders", "csv list", "folder per person", "market-named pile")


def folder_layout(root: Path, split: float | None = None) -> str:
    """Which of LAYOUTS `root` is in (reading folder names, no image); DataMissingError (one line)
    when it is none of them or `split` does not fit it."""
    if root.suffix.lower() == ".csv" and not root.exists():
        raise DataMissingError(
            f"dataset not found: the list {root} is missing; point --root at your CSV list"
        )
    if root.is_file() or root.suffix.lower() == ".csv":
        if root.suffix.lower() != ".csv" or not root.is_file():
            raise DataMissingError(
                f"folder dataset: {root} is not a folder or a CSV list (*.csv, header "
                "path,person[,camera]); point --root at one"
            )
    elif not root.is_dir():
        raise DataMissingError(
            f"dataset not found: {root} is missing; the folder dataset reads --root itself: a folder "
            f"holding {{{','.join(SUBSETS)}}}/ with crops named like {EXAMPLE_NAME}, or with --split a "
            "folder per person, a CSV list or one pile of Market-named crops. reidgraft never downloads."
        )
    else:
        present = [name for name in SUBSETS if (root / name).is_dir()]
        if present and len(present) < len(SUBSETS):
            missing = next(root / name for name in SUBSETS if name not in present)
            raise DataMissingError(
                f"dataset not found: {missing} is missing; the folder dataset reads --root itself: "
                f"expected {root}/{{{','.join(SUBSETS)}}}/ with crops named like {EXAMPLE_NAME}. "
                "Point --root at your own folder in that layout. reidgraft never downloads."
            )
        if present:
            if split is not None:
                raise DataMissingError(
                    f"folder dataset: {root} is split already ({', '.join(SUBSETS)}); drop --split, or "
                    "point --root at the pile you want split"
                )
            return "split folders"
    if split is None:
        raise DataMissingError(
            f"folder dataset: {root} holds no {', '.join(SUBSETS)} folders; to split a folder per "
            "person, a CSV list or one pile of Market-named crops by identity, pass --split 0.5 (the "
            "share of identities to train on)"
        )
    if root.is_file():
        return "csv list"
    # Market names give person and camera wherever the files lie; other names need a folder per person
    names = image_files(root)
    if names and all(read_name(Path(name).name) for name in names):
        return "market-named pile"
    return "folder per person" if any(entry.is_dir() for entry in root.iterdir()) else "market-named pile"


def check_folder(root: Path, split: float | None = None, split_seed: int = 0) -> None:
    """DataMissingError unless `root` is in one of the layouts (the names are read later)."""
    folder_layout(root, split)


def read_identity_folders(root: Path) -> list[Item]:
    """A folder per person: (path, person id, UNKNOWN_CAMERA), ids 1..N by sorted folder name.
    Images directly in `root` belong to nobody and are refused, naming the first."""
    loose = sorted(
        entry for entry in root.iterdir() if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES
    )
    if loose:
        raise DataMissingError(
            f"folder dataset: {loose[0]} lies in {root} itself, in no person's folder; a folder per "
            "person holds each person's crops in ROOT/<person>/: move it into one, or out"
        )
    people = {
        entry.name: sorted(image_files(entry))
        for entry in sorted(root.iterdir())
        if entry.is_dir() and not entry.name.startswith((".", "__"))  # (.ipynb_checkpoints, __MACOSX)
    }
    people = {name: images for name, images in people.items() if images}  # (an empty folder is nobody)
    return [
        (str(path), number, UNKNOWN_CAMERA)
        for number, images in enumerate(people.values(), start=1)
        for path in images
    ]


def read_csv_list(path: Path) -> list[Item]:
    """A CSV list of path,person[,camera] (header first; paths relative to the list's folder;
    cameras from 1): items with person ids 1..N by sorted name. One line naming the row for a
    bad header, row, missing file or camera."""
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except UnicodeDecodeError as error:
        raise DataMissingError(
            f"{path}: byte {error.start} is not text (UTF-8); save the list as UTF-8"
        ) from None
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if header not in (["path", "person"], ["path", "person", "camera"]):
        raise DataMissingError(
            f"{path}: the first row must be the header path,person or path,person,camera, got "
            f"{','.join(rows[0]) if rows else 'an empty file'!r}"
        )
    with_cameras = len(header) == 3
    listed, rows_of = [], {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataMissingError(f"{path}: row {number} has {len(row)} values, the header {len(header)}")
        image, person = (path.parent / row[0].strip()), row[1].strip()
        if not person:
            raise DataMissingError(f"{path}: row {number} names no person")
        if not image.is_file():
            raise DataMissingError(
                f"{path}: row {number}: {image} is not a file; fix the path (relative to the list)"
            )
        camid = UNKNOWN_CAMERA
        if with_cameras:
            camera = row[2].strip()
            if not camera.isdigit() or int(camera) < 1:
                raise DataMissingError(
                    f"{path}: row {number}: camera {camera!r} must be a whole number from 1"
                )
            camid = int(camera) - 1
        key = image.resolve()
        if key in rows_of:  # (in two splits, or a query that is its own gallery image)
            raise DataMissingError(
                f"{path}: rows {rows_of[key]} and {number} list the same image {image}; list it once"
            )
        rows_of[key] = number
        listed.append((str(image), person, camid))
    if not listed:
        raise DataMissingError(f"{path}: the list names no image; add rows path,person[,camera]")
    ids = {name: index + 1 for index, name in enumerate(sorted({person for _, person, _ in listed}))}
    return sorted((image, ids[person], camid) for image, person, camid in listed)


def read_pile(root: Path) -> list[Item]:
    """Market-named crops anywhere under `root` (no split folders): names give person and camera."""
    images = sorted(Path(path) for path in image_files(root))
    return [(str(path), *parse_name(path)) for path in images]


def split_pile(items: list[Item], share: float, seed: int) -> tuple[list[Item], list[Item], list[Item]]:
    """Train, query and gallery from one pile, by identity: `share` of the identities (shuffled
    with `seed`) train; of each other person, one image per camera is a query (one image in all
    when cameras are unknown) as long as every query keeps a match from another camera in the
    gallery, and the rest are the gallery. A person with one image, or seen by one known camera only,
    goes to the gallery alone (it has no match to find); person 0 (distractors) goes to the
    gallery, -1 (junk) nowhere. The same items, share and seed give the same split."""
    if not items:
        raise DataMissingError(f"folder dataset: no images found ({', '.join(IMAGE_SUFFIXES)})")
    people: dict[int, list[Item]] = {}
    for item in sorted(items):
        people.setdefault(item[1], []).append(item)
    people.pop(-1, None)
    gallery = people.pop(0, [])
    ids = sorted(people)
    if len(ids) < 2:
        raise DataMissingError(f"folder dataset: {len(ids)} person(s) found; --split needs at least 2")
    generator = random.Random(seed)
    generator.shuffle(ids)
    trained = max(1, min(len(ids) - 1, round(share * len(ids))))
    train = [item for pid in sorted(ids[:trained]) for item in people[pid]]
    query = []
    for pid in sorted(ids[trained:]):
        images = people[pid]
        cameras: dict[int, list[Item]] = {}
        for item in images:
            cameras.setdefault(item[2], []).append(item)
        if len(images) < 2 or (UNKNOWN_CAMERA not in cameras and len(cameras) < 2):
            gallery += images
            continue
        # one query per camera while every query keeps a match from another camera in the gallery
        chosen, rest = [], list(images)
        for _, group in sorted(cameras.items()):
            candidate = generator.choice(group)
            left = [item for item in rest if item != candidate]
            if all(any(_other_camera(kept, asked) for kept in left) for asked in [*chosen, candidate]):
                chosen, rest = [*chosen, candidate], left
        query += chosen
        gallery += rest
    if not query:
        raise DataMissingError(
            f"folder dataset: none of the {len(ids) - trained} people held out for testing has two images "
            "(from two cameras, where cameras are known), so no query would have a match; lower --split "
            "or add images"
        )
    return train, sorted(query), sorted(gallery)


def _other_camera(gallery_item: Item, query_item: Item) -> bool:
    """Whether evaluation counts `gallery_item` as a match of `query_item` (same person given)."""
    return query_item[2] == UNKNOWN_CAMERA or gallery_item[2] != query_item[2]


def read_folder(root: Path, split: float | None = None, split_seed: int = 0) -> tuple[list, list, list]:
    """Train (ids relabelled 0..n-1), query and gallery of `root`, in whichever layout it is."""
    layout = folder_layout(root, split)
    if layout == "split folders":
        return read_market_named_folder(root)
    reader = {
        "csv list": read_csv_list,
        "folder per person": read_identity_folders,
        "market-named pile": read_pile,
    }
    train, query, gallery = split_pile(reader[layout](root), split, split_seed)
    label = {pid: index for index, pid in enumerate(sorted({pid for _, pid, _ in train}))}
    return [(path, label[pid], camid) for path, pid, camid in train], query, gallery


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
        def __init__(self, root: str = "", split: float | None = None, split_seed: int = 0, **kwargs):
            self.root = self.dataset_dir = str(Path(root).expanduser().resolve())
            train, query, gallery = read_folder(Path(self.dataset_dir), split, split_seed)
            super().__init__(train, query, gallery, **kwargs)

    try:
        register_image_dataset(TORCHREID_NAME, MarketNamedFolder)
    except ValueError:  # registered already, in this process
        pass


def load_folder(root: Path, split: float | None = None, split_seed: int = 0) -> tuple[list, list, list]:
    """Train, query and gallery of the folder `root`, read through torchreid's dataset registry."""
    register()
    from torchreid.reid.data.datasets import init_image_dataset

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dataset = init_image_dataset(
            TORCHREID_NAME, root=str(root), verbose=False, split=split, split_seed=split_seed
        )
    return dataset.train, dataset.query, dataset.gallery


def load_folder_splits(root: Path, split: float | None = None, split_seed: int = 0) -> ReidSplits:
    """The `folder` dataset: `root` itself holds the three Market-1501 splits, or with `split` it
    is one pile split by identity (the split's settings are part of the data's fingerprint)."""
    splits = make_splits("folder", *load_folder(root, split, split_seed))
    if split is None:
        return splits
    return dataclasses.replace(splits, options={"split": split, "split_seed": split_seed})
