"""CUHK01 (Li et al., ACCV 2012): 971 identities with 4 images each, two per camera view, as
`<root>/cuhk01/campus/NNNNMMM.png` (NNNN the identity from 0001, MMM the image: 001 and 002 from
view A, 003 and 004 from view B). Parsed by torchreid's own `CUHK01` class.

torchreid draws its split file with an unseeded `np.random.shuffle`, so two machines (or two
first uses) train on different identities. reidgraft writes the split itself, seeded, into
`<root>/cuhk01/SPLIT_FILE` in torchreid's format (into the temporary folder when that one is
read-only), and points torchreid's class at it: the
identities shuffled with SPLIT_SEED, the first half (485) to train on, the other 486 to test;
the test identities' view-A images are the queries, their view-B images the gallery (torchreid's
split 0). The split depends only on the images' names, so the same images give the same split
on any machine and under any root.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np

from ..files import atomic_write_text, fingerprint
from .splits import DataMissingError, ReidSplits, make_splits

SPLIT_SEED = 0
SPLIT_FILE = f"reidgraft_split_seed{SPLIT_SEED}.json"
NAME = re.compile(r"^(\d{4})(\d{3})\.png$")
SOURCE = (
    "Get CUHK01 from its authors (Li et al., ACCV 2012; the CUHK person re-identification page) "
    "and unpack its campus/ folder into <root>/cuhk01/, or point --root (or $REIDGRAFT_DATA) at "
    "the folder that holds cuhk01/. reidgraft never downloads."
)


def _view(image: int) -> int:
    """Camera view of image number MMM: 001-002 are view A (0), 003-004 view B (1), as torchreid."""
    return (image - 1) // 2


def campus_images(root: Path) -> list[tuple[Path, int, int]]:
    """(path, identity from 0, view) of every image in `<root>/cuhk01/campus`, sorted by name;
    DataMissingError (one line) when the folder is missing, holds no PNG, holds a PNG not named
    NNNNMMM.png or an empty one, or an identity lacks a view (the folder is then incomplete)."""
    campus = root / "cuhk01" / "campus"
    if not campus.is_dir():
        raise DataMissingError(
            f"dataset not found: {campus} is missing; expected {campus}/NNNNMMM.png (971 identities "
            f"x 4 images). {SOURCE}"
        )
    paths = sorted(campus.glob("*.png"))
    if not paths:
        raise DataMissingError(f"{campus} holds no .png images; expected NNNNMMM.png files. {SOURCE}")
    images, views = [], {}
    for path in paths:
        match = NAME.match(path.name)
        if not match or int(match[1]) < 1 or not 1 <= int(match[2]) <= 4:
            raise DataMissingError(
                f"{path} is not named as CUHK01 names its images (NNNNMMM.png: identity from 0001, "
                "image 001-004); move it out of campus/"
            )
        if path.stat().st_size == 0:
            raise DataMissingError(f"{path} is empty: the campus folder is damaged; unpack it again")
        pid, view = int(match[1]) - 1, _view(int(match[2]))
        images.append((path, pid, view))
        views.setdefault(pid, set()).add(view)
    lacking = next((pid for pid, seen in sorted(views.items()) if seen != {0, 1}), None)
    if lacking is not None:
        which = "B (images 003, 004)" if 1 not in views[lacking] else "A (images 001, 002)"
        raise DataMissingError(
            f"{campus}: identity {lacking + 1:04d} has no image from view {which}, so it cannot be "
            "matched across views: the campus folder is incomplete; unpack it again"
        )
    if len(views) < 4:
        raise DataMissingError(
            f"{campus} holds {len(views)} identities; a split needs at least 4 (CUHK01 has 971)"
        )
    return images


def check_cuhk01(root: Path) -> None:
    campus_images(root)


def seeded_split(images: list[tuple[Path, int, int]]) -> dict:
    """The one split reidgraft uses, in torchreid's split-file format (absolute paths, train ids
    relabelled in order); which identities train depends on the identities alone."""
    pids = sorted({pid for _, pid, _ in images})
    order = np.random.default_rng(SPLIT_SEED).permutation(len(pids))
    train_pids = sorted(pids[i] for i in order[: len(pids) // 2])
    label = {pid: index for index, pid in enumerate(train_pids)}
    train, query, gallery = [], [], []
    for path, pid, view in images:
        if pid in label:
            train.append((str(path), label[pid], view))
        else:
            (query if view == 0 else gallery).append((str(path), pid, view))
    tested = len(pids) - len(train_pids)
    return {
        "train": train, "query": query, "gallery": gallery, "num_train_pids": len(train_pids),
        "num_query_pids": tested, "num_gallery_pids": tested,
    }  # fmt: skip


def load_cuhk01(root: Path) -> ReidSplits:
    """CUHK01 through torchreid's class, on reidgraft's seeded split (written, or rewritten when
    the images moved, before torchreid reads it; torchreid's own unseeded splits.json, if there,
    is left alone and unused)."""
    import contextlib
    import io
    import warnings

    images = campus_images(root)
    split_path = root / "cuhk01" / SPLIT_FILE
    text = json.dumps([seeded_split(images)])
    if not split_path.is_file() or split_path.read_text() != text:
        try:
            atomic_write_text(split_path, text)
        except OSError:  # a read-only data root: the split is the same wherever it is kept
            split_path = (
                Path(tempfile.gettempdir()) / f"reidgraft-cuhk01-{fingerprint(text.encode())[:16]}.json"
            )
            atomic_write_text(split_path, text)

    with warnings.catch_warnings():  # torchreid's notice that its Cython ranking is absent
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.data.datasets.image.cuhk01 import CUHK01

    class SeededCUHK01(CUHK01):
        def prepare_split(self) -> None:  # read reidgraft's split, never draw one
            self.split_path = str(split_path)

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dataset = SeededCUHK01(root=str(root), split_id=0, verbose=False)
    return make_splits("cuhk01", dataset.train, dataset.query, dataset.gallery)
