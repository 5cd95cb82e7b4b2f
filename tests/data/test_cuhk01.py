"""CUHK01 through torchreid's class on reidgraft's seeded split, from painted stand-in images."""

import json
import shutil

import pytest
from PIL import Image

from reidgraft.data import DataMissingError, load_reid_dataset
from reidgraft.data.cuhk01 import SPLIT_FILE

IDENTITIES = 971  # as in CUHK01: 485 train, 486 test


def paint_campus(root, identities=IDENTITIES):
    """`<root>/cuhk01/campus/NNNNMMM.png`: 4 tiny images per identity, 001-002 view A, 003-004 B."""
    campus = root / "cuhk01" / "campus"
    campus.mkdir(parents=True)
    for pid in range(1, identities + 1):
        for image in range(1, 5):
            colour = (pid % 256, (pid // 256) * 60, image * 50)
            Image.new("RGB", (4, 8), colour).save(campus / f"{pid:04d}{image:03d}.png")
    return campus


@pytest.fixture(scope="module")
def campus_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuhk01-data")
    paint_campus(root)
    return root


def identities(records):
    return sorted({pid for _, pid, _ in records})


def test_the_split_is_seeded_halved_and_the_same_under_another_root(campus_root, tmp_path, no_network):
    splits = load_reid_dataset("cuhk01", campus_root)
    assert splits.num_train_pids == 485 and len(splits.train) == 485 * 4
    assert len(identities(splits.query)) == len(identities(splits.gallery)) == 486
    assert identities(splits.query) == identities(splits.gallery)
    assert {camid for _, _, camid in splits.query} == {0} and {camid for _, _, camid in splits.gallery} == {1}
    assert len(splits.query) == len(splits.gallery) == 486 * 2
    # the training identities are relabelled 0..484 and are none of the test identities
    assert identities(splits.train) == list(range(485))
    train_names = {path.rsplit("/", 1)[1][:4] for path, _, _ in splits.train}
    test_names = {path.rsplit("/", 1)[1][:4] for path, _, _ in splits.query}
    assert len(train_names) == 485 and not train_names & test_names
    assert (campus_root / "cuhk01" / SPLIT_FILE).is_file()
    assert not (campus_root / "cuhk01" / "splits.json").exists()  # torchreid's unseeded one is not drawn

    again = load_reid_dataset("cuhk01", campus_root)
    assert again.train == splits.train and again.query == splits.query
    moved = tmp_path / "elsewhere"
    shutil.copytree(campus_root / "cuhk01" / "campus", moved / "cuhk01" / "campus")
    there = load_reid_dataset("cuhk01", moved)
    assert {path.rsplit("/", 1)[1] for path, _, _ in there.train} == {
        path.rsplit("/", 1)[1] for path, _, _ in splits.train
    }
    assert json.loads((moved / "cuhk01" / SPLIT_FILE).read_text())[0]["num_train_pids"] == 485


def test_a_missing_or_damaged_campus_folder_is_one_line(tmp_path, no_network):
    def refused(root):
        with pytest.raises(DataMissingError) as error:
            load_reid_dataset("cuhk01", root)
        (line,) = str(error.value).splitlines()
        return line

    assert "cuhk01/campus is missing" in refused(tmp_path) and "reidgraft never downloads" in refused(
        tmp_path
    )
    campus = paint_campus(tmp_path, identities=6)
    (campus / "0003004.png").unlink()
    (campus / "0003003.png").unlink()
    assert "identity 0003 has no image from view B (images 003, 004)" in refused(tmp_path)
    Image.new("RGB", (4, 8)).save(campus / "0003003.png")
    (campus / "photo.png").write_bytes(b"")
    assert "photo.png is not named as CUHK01 names its images" in refused(tmp_path)
    (campus / "photo.png").unlink()
    (campus / "0002001.png").write_bytes(b"")
    assert "0002001.png is empty" in refused(tmp_path)
    assert not (tmp_path / "cuhk01" / SPLIT_FILE).exists()  # nothing written before the check passes


def test_a_read_only_data_root_keeps_the_split_in_the_temporary_folder(campus_root, tmp_path, monkeypatch):
    """The dataset folder may be shared and read-only: the same split is kept elsewhere."""
    from reidgraft.data import cuhk01

    write = cuhk01.atomic_write_text
    (campus_root / "cuhk01" / SPLIT_FILE).unlink(missing_ok=True)
    writes = []

    def read_only_root(path, text):
        if campus_root in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        writes.append(path)
        write(path, text)

    monkeypatch.setattr(cuhk01, "atomic_write_text", read_only_root)
    monkeypatch.setattr(cuhk01.tempfile, "gettempdir", lambda: str(tmp_path))
    splits = load_reid_dataset("cuhk01", campus_root)
    assert splits.num_train_pids == 485 and len(splits.query) == 972
    (kept,) = writes
    assert kept.parent == tmp_path and kept.name.startswith("reidgraft-cuhk01-")
    assert not (campus_root / "cuhk01" / SPLIT_FILE).exists()
