"""What the demo searches: a dataset's gallery split or any folder of images, in a fixed order,
with each image's person and camera where its Market-1501-style name gives them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import REID, dataset_names, load_reid_dataset, load_run_splits
from ..data.folder import IMAGE_SUFFIXES, read_name
from ..data.splits import UNKNOWN_CAMERA
from ..engine.run_dir import RunDir
from ..images import image_files

if TYPE_CHECKING:
    from .model import RunModel

DEFAULT_RUNS = Path("runs")
README_MAIN_JOB = "bash scripts/setup.sh && .venv/bin/python tools/train.py"


class DemoError(ValueError):
    """Bad input to the demo (a run, a gallery, an upload); the message says what and how to fix it."""


def parse_market_name(name: str) -> tuple[int | None, int | None]:
    """(pid, 0-based camera) from a Market-1501-style file name (the `folder` dataset's rule),
    or (None, None) for other names."""
    return read_name(Path(name).name) or (None, None)


@dataclass(frozen=True)
class Gallery:
    """The images to search, in a fixed order; `pids`/`camids` are None where the name says nothing."""

    label: str
    root: Path
    paths: list[str]
    pids: list[int | None]
    camids: list[int | None]
    example_queries: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def name_of(self, index: int) -> str:
        path = Path(self.paths[index])
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name


def folder_gallery(folder: str | Path) -> Gallery:
    """Every image under `folder` (recursively, sorted by path)."""
    root = Path(folder)
    if not root.is_dir():
        raise DemoError(f"gallery folder {root} does not exist")
    paths = image_files(root)  # (linked subfolders included; an unreadable one is an error)
    if not paths:
        raise DemoError(f"gallery folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    labels = [parse_market_name(path) for path in paths]
    return Gallery(str(root), root, paths, [p for p, _ in labels], [c for _, c in labels])


def dataset_gallery(
    name: str, root: str | Path, examples: int = 8, run: RunModel | None = None, options: dict | None = None
) -> Gallery:
    """A dataset's gallery split, with query images of different people, each with a match from
    another camera in the gallery, as examples. With the `run` it was trained on, the data must
    be what that run recorded. `options`: the run's config, for datasets with variants (cuhk03)."""
    if run is None:
        splits = load_reid_dataset(name, root, options=options)
    else:
        try:
            splits = load_run_splits(name, root, run.data, str(run.run_dir), options=options)
        except ValueError as error:
            raise DemoError(str(error)) from None
    gallery_root = Path(os.path.commonpath([path for path, _, _ in splits.gallery]))
    cameras_of: dict[int, set[int]] = {}
    for _, pid, camid in splits.gallery:
        cameras_of.setdefault(pid, set()).add(camid)
    chosen, seen = [], set()
    for path, pid, camid in splits.query:
        if pid not in seen and cameras_of.get(pid, set()) - ({camid} - {UNKNOWN_CAMERA}):
            chosen.append(path)
            seen.add(pid)
        if len(chosen) == examples:
            break
    return Gallery(
        name,
        gallery_root,
        [path for path, _, _ in splits.gallery],
        [pid for _, pid, _ in splits.gallery],
        [camid for _, _, camid in splits.gallery],
        chosen,
    )


def resolve_gallery(gallery: str | None, config: dict, run: RunModel | None = None) -> Gallery:
    """`gallery` as a dataset name or a folder; by default the run's own dataset (which must
    then be the data `run` recorded)."""
    gallery = gallery or config["dataset"]
    if gallery in dataset_names(REID):
        own = run if gallery == config["dataset"] else None
        return dataset_gallery(gallery, config["root"], run=own, options=config)
    if Path(gallery).is_dir():
        return folder_gallery(gallery)
    raise DemoError(
        f"--gallery {gallery!r} is neither a re-ID dataset ({', '.join(dataset_names(REID))}) "
        "nor an existing folder"
    )


def newest_run(runs: str | Path = DEFAULT_RUNS) -> Path:
    """The run folder under `runs` whose checkpoint was written last."""
    folders = [RunDir(path) for path in Path(runs).glob("*") if path.is_dir()]
    checkpoints = [
        run.checkpoint(0 if run.is_distributed else None) for run in folders if run.has_checkpoint()
    ]
    if not checkpoints:
        raise DemoError(f"no trained run under {Path(runs)}/; make one with: {README_MAIN_JOB}")
    return RunDir(max(checkpoints, key=lambda path: path.stat().st_mtime)).path
