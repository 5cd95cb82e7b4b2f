"""`folder` in the layouts people have: a folder per person, a CSV list, one pile of Market-named
crops, each split by identity with --split (seeded, the same split on every call); without
cameras evaluation counts every gallery image of the query's person."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidgraft.data import DataMissingError, load_reid_dataset
from reidgraft.data.folder import split_pile
from reidgraft.data.splits import UNKNOWN_CAMERA
from reidgraft.evaluation import evaluate

REPO = Path(__file__).resolve().parents[2]


def painted(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 32), (shade, 255 - shade, 90)).save(path)


def people_folders(root: Path) -> Path:
    """alice..frank with 3 crops each, gil with one, an empty folder, crops in nested folders."""
    for number, name in enumerate(["alice", "bob", "carol", "dave", "erin", "frank"]):
        for shot in range(3):
            painted(root / name / ("day1" if shot else "") / f"shot{shot}.png", 30 * number + shot)
    painted(root / "gil" / "only.jpg", 250)
    (root / "nobody").mkdir()
    return root


def every_path(splits):
    return [path for part in (splits.train, splits.query, splits.gallery) for path, _, _ in part]


def test_a_folder_per_person_is_split_by_identity_the_same_way_every_time(tmp_path):
    root = people_folders(tmp_path / "people")
    first = load_reid_dataset("folder", root, options={"split": 0.5, "split_seed": 3})
    again = load_reid_dataset("folder", root, options={"split": 0.5, "split_seed": 3})
    assert first.fingerprint() == again.fingerprint() and first.train == again.train
    assert first.query == again.query and first.gallery == again.gallery
    assert first.options == {"split": 0.5, "split_seed": 3}

    assert sorted(every_path(first)) == sorted(str(p) for p in root.rglob("*") if p.is_file())  # each once
    assert first.num_train_pids == 4  # round(0.5 * 7 people with crops; the empty folder is nobody)
    assert {camid for *_, camid in first.train + first.query + first.gallery} == {UNKNOWN_CAMERA}

    def folders(items):
        return {Path(path).relative_to(root).parts[0] for path, _, _ in items}

    assert not folders(first.train) & folders(first.query + first.gallery)  # a person in one place
    assert len(folders(first.train)) == 4 and len(folders(first.query + first.gallery)) == 3
    query_people = [pid for _, pid, _ in first.query]
    assert len(query_people) == len(set(query_people))  # one query per person (no cameras)
    gallery_people = {pid for _, pid, _ in first.gallery}
    assert set(query_people) <= gallery_people  # every query has its person in the gallery
    assert "gil" not in folders(first.query)  # one crop: in the gallery (or training) alone

    other = load_reid_dataset("folder", root, options={"split": 0.5, "split_seed": 4})
    assert (other.train, other.query) != (first.train, first.query)  # the seed decides the split


def test_a_csv_list_with_cameras_and_its_faults_are_named(tmp_path):
    crops = tmp_path / "crops"
    rows = ["path,person,camera"]
    for number, person in enumerate(["ann", "ben", "cid", "dot"]):
        for camera in (1, 2):
            painted(crops / f"{person}_{camera}.png", 40 * number + camera)
            rows.append(f"crops/{person}_{camera}.png,{person},{camera}")
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(rows) + "\n")
    splits = load_reid_dataset("folder", listing, options={"split": 0.5, "split_seed": 0})
    # two crops per test person, one per camera: one is the query, the other its match
    assert splits.num_train_pids == 2 and len(splits.query) == 2 and len(splits.gallery) == 2
    for _, pid, camid in splits.query:  # camera 1 of the list is camid 0; the match is the other camera
        assert [c for _, p, c in splits.gallery if p == pid] == [1 - camid]

    for text, said in [
        ("file,who\nx.png,a\n", "the first row must be the header path,person or path,person,camera"),
        ("path,person\ncrops/none.png,ann\n", f"row 2: {tmp_path / 'crops' / 'none.png'} is not a file"),
        ("path,person,camera\ncrops/ann_1.png,ann,0\n", "row 2: camera '0' must be a whole number from 1"),
        ("path,person\ncrops/ann_1.png,\n", "row 2 names no person"),
        ("path,person\n", "the list names no image"),
    ]:
        listing.write_text(text)
        with pytest.raises(DataMissingError, match="^" + str(listing).replace("\\", "\\\\")) as raised:
            load_reid_dataset("folder", listing, options={"split": 0.5})
        assert said in str(raised.value) and "\n" not in str(raised.value)


def test_a_pile_of_market_named_crops_takes_its_cameras_from_the_names(tmp_path):
    for pid in range(1, 7):
        for camera in (1, 2, 3):
            painted(tmp_path / "pile" / f"{pid:04d}_c{camera}s1_000{pid}0{camera}_00.jpg", 20 * pid + camera)
    painted(tmp_path / "pile" / "0000_c1s1_000999_00.jpg", 7)  # a distractor
    splits = load_reid_dataset("folder", tmp_path / "pile", options={"split": 0.5})
    # 3 test people seen by 3 cameras: queries from two cameras, the third's crop their match
    assert splits.num_train_pids == 3 and len(splits.query) == 6 and len(splits.gallery) == 3 + 1
    assert any(pid == 0 for _, pid, _ in splits.gallery) and all(pid != 0 for _, pid, _ in splits.query)


def test_a_split_that_leaves_no_query_and_a_twice_listed_image_are_refused(tmp_path):
    people = tmp_path / "people"
    for number in range(4):  # everyone has one crop: no held-out person has a match to find
        painted(people / f"p{number}" / "only.png", 10 * number)
    with pytest.raises(DataMissingError, match="none of the 2 people held out for testing has two images"):
        load_reid_dataset("folder", people, options={"split": 0.5})
    painted(tmp_path / "a.png", 1)
    painted(tmp_path / "b.png", 2)
    listing = tmp_path / "list.csv"
    listing.write_text("path,person\na.png,ann\nb.png,ann\n./a.png,bob\n")
    with pytest.raises(DataMissingError, match="rows 2 and 4 list the same image"):
        load_reid_dataset("folder", listing, options={"split": 0.5})
    with pytest.raises(DataMissingError, match="the list .*missing.csv is missing"):
        load_reid_dataset("folder", tmp_path / "missing.csv", options={"split": 0.5})


def test_hidden_folders_are_nobody_and_validation_works_without_cameras(tmp_path):
    from reidgraft.data.validation import hold_out_identities

    root = people_folders(tmp_path / "people")
    painted(root / ".ipynb_checkpoints" / "shot.png", 3)
    painted(root / "__MACOSX" / "shot.png", 4)
    splits = load_reid_dataset("folder", root, options={"split": 0.5})
    assert not [path for path in every_path(splits) if ".ipynb" in path or "__MACOSX" in path]
    trained, validation = hold_out_identities(splits, 2)  # camera-less people: first image the query
    assert len(validation.query) == 2 and len(validation.gallery) == 4 and trained.num_train_pids == 2


def test_layout_faults_are_one_line(tmp_path):
    people = people_folders(tmp_path / "people")
    with pytest.raises(DataMissingError, match="pass --split 0.5"):
        load_reid_dataset("folder", people)  # a pile without --split
    painted(people / "loose.png", 9)
    with pytest.raises(DataMissingError, match="loose.png lies in .* itself, in no person's folder"):
        load_reid_dataset("folder", people, options={"split": 0.5})
    split = tmp_path / "split"
    for name in ("bounding_box_train", "query", "bounding_box_test"):
        painted(split / name / "0001_c1s1_000001_00.jpg", 1)
    with pytest.raises(DataMissingError, match="is split already .* drop --split"):
        load_reid_dataset("folder", split, options={"split": 0.5})
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(DataMissingError, match="is not a folder or a CSV list"):
        load_reid_dataset("folder", text, options={"split": 0.5})
    with pytest.raises(DataMissingError, match="1 person\\(s\\) found; --split needs at least 2"):
        split_pile([("a.png", 1, UNKNOWN_CAMERA)], 0.5, 0)


def test_without_cameras_every_gallery_image_of_the_person_is_a_match():
    query, gallery = np.array([[1.0, 0.0]]), np.array([[0.9, 0.1], [0.0, 1.0]])
    unknown = evaluate(query, gallery, [5], [5, 6], [UNKNOWN_CAMERA], [UNKNOWN_CAMERA] * 2)
    assert unknown.mAP == 1.0 and unknown.num_valid_queries == 1
    with pytest.raises(ValueError, match="no valid query"):  # the same camera known: the match is left out
        evaluate(query, gallery, [5], [5, 6], [0], [0, 0])


@pytest.mark.slow
def test_train_on_a_folder_per_person_with_split_says_there_are_no_cameras(tmp_path):
    from reidgraft.data.datasets import synthetic_splits

    synthetic = synthetic_splits(
        tmp_path / "synthetic", train_ids=8, test_ids=6, images_per_id=6, distractors=0, height=32, width=16
    )
    people = tmp_path / "people"  # a folder per person, the crops under names that say nothing
    parts = {"train": synthetic.train, "test": synthetic.query + synthetic.gallery}
    for part, items in parts.items():
        for number, (path, pid, _) in enumerate(items):
            if pid > 0 or part == "train":  # (train ids are relabelled from 0; test id 0 is a distractor)
                (people / f"{part}-{pid:03d}").mkdir(parents=True, exist_ok=True)
                shutil.copy(path, people / f"{part}-{pid:03d}" / f"crop{number}.png")
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--dataset", "folder", "--root", str(people),
         "--split", "0.6", "--arch", "mobilenetv2_x1_0", "--weights", "none", "--models", "2",
         "--epochs", "1", "--batch-size", "8", "--height", "32", "--width", "16", "--workers", "0",
         "--device", "cpu", "--optimizer", "sgd", "--lr", "0.01", "--output", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "REIDGRAFT_LOG_SECONDS": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "recipe: folder_mobilenetv2 (shipped" in result.stdout
    assert (
        "note: folder: no camera ids, so every gallery image of the query's person is a match"
        in result.stdout
    )
    assert "mAP" in result.stdout
