"""Re-ID datasets by name, parsed by torchreid's own dataset classes.

torchreid's classes start an HTTP download when their folder is missing and leave an empty
folder behind; reidgraft checks the layout first and stops with one readable line instead.
The synthetic dataset is written once in Market-1501 layout and read by torchreid's Market1501
class, so it takes exactly the path real data takes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Item = tuple[str, int, int]  # image path, person id, camera index (0-based)
SUBSETS = ("bounding_box_train", "query", "bounding_box_test")


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

    @property
    def num_train_pids(self) -> int:
        return len({pid for _, pid, _ in self.train})

    def fingerprint(self) -> dict[str, Any]:
        """What a run records about its data, to tell later whether other data is the same: the
        image counts and a hash of every item (path below the dataset's folder, pid, camera)."""
        every = [(split, item) for split in ("train", "query", "gallery") for item in getattr(self, split)]
        base = os.path.commonpath([path for _, (path, _, _) in every]) if every else ""
        listing = hashlib.sha256()
        for split, (path, pid, camid) in every:
            listing.update(f"{split}\t{os.path.relpath(path, base)}\t{pid}\t{camid}\n".encode())
        found = {
            "dataset": self.name,
            "images": {"train": len(self.train), "query": len(self.query), "gallery": len(self.gallery)},
            "items_sha256": listing.hexdigest(),
        }
        return found | ({"generator": self.generator} if self.generator else {})


@dataclass(frozen=True)
class RealDataset:
    """Where torchreid expects a public dataset, and where a user gets it."""

    folder: str  # under the data root
    layouts: tuple[str, ...]  # candidate data folders under `folder`, preferred first
    source: str
    torchreid_class: str

    def data_dir(self, root: Path) -> Path:
        """The folder holding the three subsets; raises DataMissingError naming what is wrong."""
        base = root / self.folder
        candidates = [base / layout for layout in self.layouts]
        for candidate in candidates:
            if all(_has_images(candidate / subset) for subset in SUBSETS):
                return candidate
        preferred = candidates[0]
        missing = next(preferred / s for s in SUBSETS if not _has_images(preferred / s))
        layout = f"{preferred}/{{{','.join(SUBSETS)}}}/*.jpg"
        raise DataMissingError(
            f"dataset not found: {missing} is missing or holds no .jpg images; expected {layout}. "
            f"{self.source} Or point --root (or $REIDGRAFT_DATA) at the folder that holds "
            f"{self.folder}/. reidgraft never downloads."
        )


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.jpg"))


MARKET1501 = RealDataset(
    folder="market1501",
    layouts=("Market-1501-v15.09.15", "."),
    source="Get Market-1501-v15.09.15.zip from its authors (Zheng et al., ICCV 2015) and unzip it "
    "into <root>/market1501/.",
    torchreid_class="market1501.Market1501",
)
DUKEMTMCREID = RealDataset(
    folder="dukemtmc-reid",
    layouts=("DukeMTMC-reID",),
    source="Get DukeMTMC-reID.zip from its authors (Zheng et al., ICCV 2017) and unzip it "
    "into <root>/dukemtmc-reid/.",
    torchreid_class="dukemtmcreid.DukeMTMCreID",
)


def _parse_with_torchreid(class_path: str, root: Path) -> tuple[list, list, list]:
    """Run torchreid's dataset class on a checked folder; return its train, query, gallery."""
    import importlib

    module_name, class_name = class_path.split(".")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # its Cython and layout notices; the layout is checked
        module = importlib.import_module(f"torchreid.reid.data.datasets.image.{module_name}")
        dataset = getattr(module, class_name)(root=str(root), verbose=False)
    return dataset.train, dataset.query, dataset.gallery


def _splits(name: str, train, query, gallery) -> ReidSplits:
    # torchreid lists files in glob order; sort so every run sees the same order.
    def items(data):
        return sorted((str(path), int(pid), int(camid)) for path, pid, camid, *_ in data)

    return ReidSplits(name, items(train), items(query), items(gallery))


def _real(spec: RealDataset, name: str) -> Callable[[Path], ReidSplits]:
    def load(root: Path) -> ReidSplits:
        spec.data_dir(root)  # fail before torchreid can create a folder or download
        return _splits(name, *_parse_with_torchreid(spec.torchreid_class, root))

    return load


def synthetic_splits(root: Path, **params) -> ReidSplits:
    """Write the synthetic dataset under `<root>/synthetic` once (params: see
    `write_synthetic_market`), then read it with torchreid's Market1501 class.

    Without params, a complete synthetic set already there is used whatever its size (a test or
    a user may have written a smaller one); otherwise the default set is written.
    """
    from .synthetic import MANIFEST_NAME, existing_params, write_synthetic_market

    synthetic_root = Path(root) / "synthetic"
    folder = write_synthetic_market(synthetic_root, **(params or existing_params(synthetic_root) or {}))
    manifest = (folder / MANIFEST_NAME).read_bytes()
    generator = {
        "params": json.loads(manifest)["params"],
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
    }
    splits = _splits("synthetic", *_parse_with_torchreid(MARKET1501.torchreid_class, synthetic_root))
    return dataclasses.replace(splits, generator=generator)


# Dataset name -> loader of its splits from a data root (the registry, `registry.py`, names them).
_LOADERS: dict[str, Callable[[Path], ReidSplits]] = {
    "market1501": _real(MARKET1501, "market1501"),
    "dukemtmcreid": _real(DUKEMTMCREID, "dukemtmcreid"),
    "synthetic": synthetic_splits,
}


def load_reid_splits(name: str, root: str | Path) -> ReidSplits:
    """The splits of re-ID dataset `name` under `root` (use `registry.load_reid_dataset`)."""
    return _LOADERS[name](Path(root).expanduser().resolve())
