"""The synthetic dataset: parsed by torchreid's own Market1501, deterministic, written once, atomically."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from reidgraft.data import synthetic
from reidgraft.data.synthetic import MARKET_FOLDER, write_synthetic_market

SMALL = dict(train_ids=6, test_ids=7, images_per_id=5, distractors=9, height=64, width=32)
SUBSETS = ("bounding_box_train", "query", "bounding_box_test")
NAME = re.compile(r"^(\d{4})_c([1-6])s1_(\d{6})_00\.jpg$")


def _parsed_by_torchreid(root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchreid's notice that its Cython evaluator is absent
        from torchreid.reid.data.datasets.image.market1501 import Market1501

        return Market1501(root=str(root), verbose=False)


def _pid_cam(path: str) -> tuple[int, int]:
    match = NAME.match(Path(path).name)
    assert match, f"not a Market-1501 file name: {path}"
    return int(match.group(1)), int(match.group(2))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_market(root, seed=3, **SMALL)
    return root


def test_torchreid_market1501_reads_what_was_written(small_root):
    dataset = _parsed_by_torchreid(small_root)
    manifest = json.loads((small_root / "market1501" / MARKET_FOLDER / "synthetic.json").read_text())
    counts = manifest["files"]
    assert len(dataset.train) == counts["bounding_box_train"] == SMALL["train_ids"] * SMALL["images_per_id"]
    assert len(dataset.query) == counts["query"]
    assert len(dataset.gallery) == counts["bounding_box_test"]
    test_images = SMALL["test_ids"] * SMALL["images_per_id"]
    assert len(dataset.query) + len(dataset.gallery) == test_images + SMALL["distractors"]
    assert dataset.num_train_pids == SMALL["train_ids"]

    train = [_pid_cam(path) for path, *_ in dataset.train]
    query = [_pid_cam(path) for path, *_ in dataset.query]
    gallery = [_pid_cam(path) for path, *_ in dataset.gallery]
    # torchreid's own pids for query and gallery are the file's (train ones are relabelled 0..n-1).
    assert [(pid, cam - 1) for pid, cam in query] == [(pid, camid) for _, pid, camid, _ in dataset.query]
    assert sorted({label for _, label, *_ in dataset.train}) == list(range(SMALL["train_ids"]))

    train_pids, query_pids = {pid for pid, _ in train}, {pid for pid, _ in query}
    gallery_pids = {pid for pid, _ in gallery}
    assert len(train_pids) == SMALL["train_ids"] and 0 not in train_pids
    assert len(query_pids) == SMALL["test_ids"] and 0 not in query_pids
    assert gallery_pids == query_pids | {0}
    assert not train_pids & gallery_pids
    assert sum(pid == 0 for pid, _ in gallery) == SMALL["distractors"]

    gallery_cams = defaultdict(set)
    for pid, cam in gallery:
        gallery_cams[pid].add(cam)
    for pid, cam in query:
        assert gallery_cams[pid] - {cam}, f"query of pid {pid} in camera {cam} has no cross-camera match"
    assert len({cam for _, cam in train + query + gallery}) >= 4


def test_images_are_rgb_of_the_requested_size(small_root):
    folder = small_root / "market1501" / MARKET_FOLDER
    paths = [path for subset in SUBSETS for path in (folder / subset).iterdir()]
    assert (
        len(paths)
        == SMALL["train_ids"] * SMALL["images_per_id"]
        + SMALL["test_ids"] * SMALL["images_per_id"]
        + SMALL["distractors"]
    )
    for path in paths:
        assert NAME.match(path.name), path.name
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (SMALL["width"], SMALL["height"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, small_root):
    again = write_synthetic_market(tmp_path / "again", seed=3, **SMALL)
    other = write_synthetic_market(tmp_path / "other", seed=4, **SMALL)
    first = _digests(small_root / "market1501" / MARKET_FOLDER)
    assert _digests(again) == first
    different = _digests(other)
    shared = (set(different) & set(first)) - {"synthetic.json"}
    assert len(shared) > 10 and not any(different[name] == first[name] for name in shared)
    # Two images of one person in one camera are not copies of each other either.
    by_pid_cam = defaultdict(set)
    for name, digest in first.items():
        if name.startswith("bounding_box_train/"):
            by_pid_cam[_pid_cam(name)].add((name, digest))
    pairs = [files for files in by_pid_cam.values() if len(files) >= 2]
    assert pairs and all(len({digest for _, digest in files}) == len(files) for files in pairs)


def test_second_call_returns_without_writing(tmp_path, monkeypatch):
    folder = write_synthetic_market(tmp_path, seed=5, **SMALL)
    before = {path: path.stat().st_mtime_ns for path in folder.rglob("*")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("the dataset was generated again")

    monkeypatch.setattr(synthetic, "_generate", must_not_run)
    assert write_synthetic_market(tmp_path, seed=5, **SMALL) == folder
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*")} == before


@pytest.mark.parametrize("change", [dict(seed=6), dict(images_per_id=6), dict(width=48)])
def test_other_parameters_on_the_same_root_are_refused(tmp_path, change):
    folder = write_synthetic_market(tmp_path, seed=5, **SMALL)
    before = _digests(folder)
    name = next(iter(change))
    with pytest.raises(ValueError, match=rf"{name}=.*delete the folder"):
        write_synthetic_market(tmp_path, **({"seed": 5} | SMALL | change))
    assert _digests(folder) == before


def test_a_damaged_or_foreign_folder_is_refused(tmp_path):
    folder = write_synthetic_market(tmp_path, seed=5, **SMALL)
    next((folder / "query").iterdir()).unlink()
    with pytest.raises(ValueError, match=r"query holds \d+ images, its manifest says"):
        write_synthetic_market(tmp_path, seed=5, **SMALL)
    (folder / "synthetic.json").unlink()  # e.g. a real Market-1501 unzipped there
    with pytest.raises(ValueError, match="not written by write_synthetic_market"):
        write_synthetic_market(tmp_path, seed=5, **SMALL)


def test_no_temporary_folder_is_left_behind(tmp_path):
    write_synthetic_market(tmp_path, seed=5, **SMALL)
    assert sorted(p.name for p in (tmp_path / "market1501").iterdir()) == [MARKET_FOLDER]


def test_an_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    real_generate = synthetic._generate

    def interrupted(folder, params):
        real_generate(folder, params)  # every image written, then killed before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_market(tmp_path, seed=5, **SMALL)
    assert list((tmp_path / "market1501").iterdir()) == []
    monkeypatch.setattr(synthetic, "_generate", real_generate)
    folder = write_synthetic_market(tmp_path, seed=5, **SMALL)
    assert len(list((folder / "bounding_box_train").iterdir())) == SMALL["train_ids"] * SMALL["images_per_id"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("train_ids", 0),
        ("test_ids", -1),
        ("images_per_id", 1),
        ("distractors", -1),
        ("height", 0),
        ("width", -32),
        ("seed", -1),
        ("train_ids", 2.5),
    ],
)
def test_bad_parameters_are_named(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        write_synthetic_market(tmp_path, **(SMALL | {name: value}))
    assert not (tmp_path / "market1501").exists()


def test_too_many_ids_for_market_pids(tmp_path):
    with pytest.raises(ValueError, match="1501"):
        write_synthetic_market(tmp_path, **(SMALL | dict(train_ids=751, test_ids=751)))


def test_a_root_that_is_a_file_is_refused(tmp_path):
    root = tmp_path / "data.txt"
    root.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        write_synthetic_market(root, **SMALL)
    assert root.read_text() == "not a folder"


def test_an_empty_target_folder_is_filled(tmp_path):
    # e.g. made by hand or by a tool that gave up: nothing in it to protect.
    (tmp_path / "market1501" / MARKET_FOLDER).mkdir(parents=True)
    folder = write_synthetic_market(tmp_path, seed=5, **SMALL)
    assert (folder / "synthetic.json").is_file()


def test_an_existing_set_is_reused_when_no_size_is_asked_for(tmp_path):
    from reidgraft.data.datasets import synthetic_splits

    small = dict(train_ids=4, test_ids=3, images_per_id=4, distractors=2, height=32, width=16)
    first = synthetic_splits(tmp_path, **small)
    again = synthetic_splits(tmp_path)  # no params: the small set, not the default one
    assert again == first and first.num_train_pids == 4
    with pytest.raises(ValueError, match="train_ids=4 \\(wanted 5\\)"):
        synthetic_splits(tmp_path, **{**small, "train_ids": 5})
