"""`folder` (your own Market-1501-named crops), read through a class of ours registered with
torchreid: the layout checked first, nothing created, names parsed from the file name alone."""

import re

import pytest
from PIL import Image
from torchreid.reid.data.datasets import init_image_dataset
from torchreid.reid.data.datasets.dataset import ImageDataset

from reidgraft.config import build_config
from reidgraft.data import DataMissingError, load_reid_dataset
from reidgraft.data.folder import TORCHREID_NAME, FolderNameError, FolderSplitError
from reidgraft.engine.runs import load_data


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 64), (40, 80, 120)).save(folder / name)


def _market_named(root):
    _images(
        root / "bounding_box_train",
        [
            "0002_c1s1_000451_03.jpg",
            "0002_c3s2_000100_01.jpg",
            "0007_c2s1_000001_00.jpg",
            "-1_c1s1_000002_00.jpg",
        ],
    )
    _images(root / "query", ["0010_c1s1_000004_00.jpg", "0011_c2s1_000005_00.jpg"])
    _images(
        root / "bounding_box_test",
        [
            "0010_c2s1_000005_00.jpg",
            "0000_c3s1_000006_00.jpg",
            "-1_c1s1_000007_00.jpg",
            "run_5_c4/0011_c3s1_000008_00.jpg",
        ],
    )
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # Market ships these


def test_folder_reads_ids_from_file_names_alone(tmp_path, no_network):
    root = tmp_path / "exp1_c2"  # torchreid's Market regex would read person 1, camera 2 here
    _market_named(root)
    gallery_file = root / "bounding_box_test" / "run_5_c4" / "0011_c3s1_000008_00.jpg"
    assert re.compile(r"([-\d]+)_c(\d)").search(str(gallery_file)).groups() == ("1", "2")

    splits = load_reid_dataset("folder", root)
    assert [(pid, cam) for _, pid, cam in splits.train] == [(0, 0), (0, 2), (1, 1)]  # 2, 2, 7 relabelled
    assert [(pid, cam) for _, pid, cam in splits.query] == [(10, 0), (11, 1)]
    # junk (-1) dropped, the distractor (0) kept, a subfolder's image read by its own name
    assert sorted((pid, cam) for _, pid, cam in splits.gallery) == [(0, 2), (10, 1), (11, 2)]
    assert str(gallery_file) in {path for path, _, _ in splits.gallery}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exp1_c2"]  # nothing written


def test_folder_is_a_torchreid_dataset_and_trains_from_the_config(tmp_path, no_network):
    _market_named(tmp_path)
    splits = load_data(
        build_config(dataset="folder", arch="resnet50", root=str(tmp_path)), log=lambda line: None
    )
    assert (len(splits.train), len(splits.query), len(splits.gallery)) == (3, 2, 3)
    dataset = init_image_dataset(TORCHREID_NAME, root=str(tmp_path), verbose=False)
    assert isinstance(dataset, ImageDataset) and dataset.num_train_pids == 2
    assert sorted((path, pid, cam) for path, pid, cam, _ in dataset.gallery) == splits.gallery


def test_a_name_that_does_not_parse_is_named(tmp_path):
    _market_named(tmp_path)
    _images(tmp_path / "query", ["person10_cam1.jpg"])
    with pytest.raises(FolderNameError) as raised:
        load_reid_dataset("folder", tmp_path)
    message = str(raised.value)
    assert message.startswith(
        f"{tmp_path / 'query' / 'person10_cam1.jpg'}: the name does not read as PID_cCAM"
    )
    assert "\n" not in message and "0002_c1s1_000451_03.jpg" in message
    _images(tmp_path / "query", [])
    (tmp_path / "query" / "person10_cam1.jpg").unlink()
    _images(tmp_path / "query", ["0010_c0s1_000004_00.jpg"])  # cameras count from 1
    with pytest.raises(FolderNameError, match="0010_c0s1_000004_00.jpg: the name does not read"):
        load_reid_dataset("folder", tmp_path)


def test_an_empty_split_or_absent_query_identities_name_the_split(tmp_path):
    _market_named(tmp_path)
    _images(tmp_path / "query", ["0042_c1s1_000001_00.jpg", "0043_c1s1_000001_00.jpg"])
    with pytest.raises(FolderSplitError) as raised:
        load_reid_dataset("folder", tmp_path)
    assert str(raised.value) == (
        f"folder dataset: split {tmp_path / 'query'} has 2 identities absent from the gallery "
        f"{tmp_path / 'bounding_box_test'} (pid 42, 43); add their gallery images or remove those queries"
    )
    for image in (tmp_path / "query").iterdir():
        image.unlink()
    _images(tmp_path / "query", ["-1_c1s1_000001_00.jpg"])  # junk only
    with pytest.raises(DataMissingError, match=f"split {re.escape(str(tmp_path / 'query'))} holds only junk"):
        load_reid_dataset("folder", tmp_path)


def test_a_missing_folder_fails_fast_and_nothing_is_created(tmp_path, no_network):
    root = tmp_path / "crops"
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset("folder", root)
    message = str(raised.value)
    assert message.startswith(f"dataset not found: {root} is missing")
    assert "--root" in message and "never downloads" in message and "\n" not in message
    assert not root.exists()
    root.mkdir()  # there, but empty: neither split folders nor, without --split, a pile to split
    with pytest.raises(
        DataMissingError, match="holds no bounding_box_train, query, bounding_box_test folders"
    ):
        load_reid_dataset("folder", root)


def test_a_folder_of_one_cameras_crops_is_refused_before_training(tmp_path, no_network):
    from reidgraft.config import ConfigError

    _images(tmp_path / "bounding_box_train", ["0002_c1s1_000001_00.jpg", "0003_c1s1_000002_00.jpg"])
    _images(tmp_path / "query", ["0010_c1s1_000004_00.jpg"])
    _images(tmp_path / "bounding_box_test", ["0010_c1s1_000005_00.jpg", "0011_c1s1_000006_00.jpg"])
    with pytest.raises(
        ConfigError, match=r"no query has its person in the gallery from another camera \(cameras seen: 1\)"
    ):
        load_data(build_config(dataset="folder", arch="resnet50", root=str(tmp_path)), log=lambda line: None)


def test_a_person_id_too_large_for_a_label_is_a_bad_name():
    from reidgraft.data.folder import read_name

    assert read_name("2147483647_c1s1_000001_00.jpg") == (2147483647, 0)
    assert read_name("99999999999999999999_c1s1_000001_00.jpg") is None


def test_a_linked_subfolder_of_crops_is_read(tmp_path, no_network):
    root = tmp_path / "mine"
    _market_named(root)
    _images(tmp_path / "more", ["0010_c3s1_000009_00.jpg"])
    (root / "bounding_box_test" / "more").symlink_to(tmp_path / "more", target_is_directory=True)
    splits = load_reid_dataset("folder", root)
    assert str(root / "bounding_box_test" / "more" / "0010_c3s1_000009_00.jpg") in {
        path for path, _, _ in splits.gallery
    }
    assert len(splits.gallery) == 4
