"""The public re-ID datasets through torchreid's own classes (Market-1501, DukeMTMC-reID, MSMT17,
CUHK03): layouts checked first, nothing downloaded or created, options reaching the loader."""

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from reidgraft.cli.train import main as train_main
from reidgraft.config import build_config
from reidgraft.data import DATASETS, DataMissingError, load_reid_dataset, load_run_splits
from reidgraft.data.datasets import SUBSETS
from reidgraft.engine.runs import load_data


@pytest.mark.parametrize(
    "name, expected",
    [
        ("market1501", "market1501/Market-1501-v15.09.15/bounding_box_train"),
        ("dukemtmcreid", "dukemtmc-reid/DukeMTMC-reID/bounding_box_train"),
    ],
)
def test_missing_dataset_fails_fast_without_download_or_folder(tmp_path, no_network, name, expected):
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset(name, root)
    message = str(raised.value)
    assert expected in message and "never downloads" in message and "--root" in message
    assert "\n" not in message
    assert list(root.iterdir()) == []  # nothing created


def test_incomplete_market_names_the_missing_subset(tmp_path, no_network):
    data = tmp_path / "market1501" / "Market-1501-v15.09.15"
    for subset in SUBSETS[:2]:
        (data / subset).mkdir(parents=True)
        Image.new("RGB", (64, 128)).save(data / subset / "0002_c1s1_000001_00.jpg")
    (data / "bounding_box_test").mkdir()  # present but empty
    with pytest.raises(DataMissingError, match="bounding_box_test is missing or holds no .jpg"):
        load_reid_dataset("market1501", tmp_path)


def test_market_layout_is_parsed_by_torchreid(tmp_path, no_network):
    data = tmp_path / "market1501" / "Market-1501-v15.09.15"
    files = {
        "bounding_box_train": [
            "0002_c1s1_000001_00.jpg",
            "0002_c2s1_000002_00.jpg",
            "0007_c3s1_000003_00.jpg",
        ],
        "query": ["0010_c1s1_000004_00.jpg"],
        "bounding_box_test": ["0010_c2s1_000005_00.jpg", "0000_c3s1_000006_00.jpg", "-1_c1s1_000007_00.jpg"],
    }
    for subset, names in files.items():
        (data / subset).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (64, 128)).save(data / subset / name)
    splits = load_reid_dataset("market1501", tmp_path)
    assert splits.num_train_pids == 2
    assert sorted(pid for _, pid, _ in splits.train) == [0, 0, 1]  # relabelled
    assert [(pid, cam) for _, pid, cam in splits.query] == [(10, 0)]
    assert sorted((pid, cam) for _, pid, cam in splits.gallery) == [(0, 2), (10, 1)]  # junk -1 dropped


def test_unknown_dataset_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'market'; choose one of: market1501, dukemtmcreid"):
        load_reid_dataset("market", tmp_path)


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 64), (40, 80, 120)).save(folder / name)


def test_missing_msmt17_fails_fast_without_download_or_folder(tmp_path, no_network):
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset("msmt17", tmp_path)
    message = str(raised.value)
    assert message.startswith(f"dataset not found: {tmp_path / 'msmt17' / 'MSMT17_V1'} is missing; expected")
    assert "list_query.txt" in message and "Wei et al." in message and "never downloads" in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []


MSMT17_LISTS = {
    "train": [
        ("0003/0003_000_01_0303morning_0015_0.jpg", 3),
        ("0003/0003_001_05_0303noon_0020_1.jpg", 3),
        ("0005/0005_000_12_0303morning_0100_0.jpg", 5),
    ],
    "val": [("0009/0009_000_02_0303morning_0200_0.jpg", 9)],
    "query": [("0000/0000_000_01_0303morning_0015_0.jpg", 0)],
    "gallery": [("0000/0000_003_02_0303noon_0030_2.jpg", 0), ("0001/0001_000_15_0304morning_0040_0.jpg", 1)],
}


def _msmt17(root, lists):
    """A tiny MSMT17_V1: train/ and test/ images, and the four lists naming them."""
    folder = root / "msmt17" / "MSMT17_V1"
    for list_name, entries in lists.items():
        image_dir = folder / ("train" if list_name in ("train", "val") else "test")
        _images(image_dir, [path for path, _ in entries])
        (folder / f"list_{list_name}.txt").write_text("".join(f"{path} {pid}\n" for path, pid in entries))
    return folder


def test_msmt17_is_parsed_by_torchreid(tmp_path, no_network):
    folder = _msmt17(tmp_path, MSMT17_LISTS)
    splits = load_reid_dataset("msmt17", tmp_path)
    # the val list stays out of training, as published results do; train ids relabelled 0..n-1
    assert [(pid, cam) for _, pid, cam in splits.train] == [(0, 0), (0, 4), (1, 11)]
    assert splits.train[0][0] == str(folder / "train" / "0003" / "0003_000_01_0303morning_0015_0.jpg")
    assert [(pid, cam) for _, pid, cam in splits.query] == [(0, 0)]
    assert [(pid, cam) for _, pid, cam in splits.gallery] == [(0, 1), (1, 14)]


def test_msmt17_lists_are_checked_line_by_line(tmp_path, no_network):
    folder = _msmt17(tmp_path, MSMT17_LISTS)
    (folder / "list_gallery.txt").write_text("0000/0000_003_02_0303noon_0030_2.jpg 0\n\n")
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'list_gallery.txt'}:2: '' is not 'PATH PID'")):
        load_reid_dataset("msmt17", tmp_path)
    (folder / "list_gallery.txt").write_text("0001/0001_000_15_0304morning_0041_0.jpg 1\n")
    with pytest.raises(DataMissingError, match=r"list_gallery.txt:1 names .*0041_0.jpg, which is missing"):
        load_reid_dataset("msmt17", tmp_path)
    (folder / "list_val.txt").unlink()
    with pytest.raises(DataMissingError, match=re.escape(f"{folder / 'list_val.txt'} is missing; expected")):
        load_reid_dataset("msmt17", tmp_path)


@pytest.mark.parametrize("which", ["train", "query", "gallery"])
def test_an_empty_msmt17_list_is_named(tmp_path, no_network, which):
    folder = _msmt17(tmp_path, MSMT17_LISTS)
    (folder / f"list_{which}.txt").write_text("")  # torchreid: IndexError
    with pytest.raises(DataMissingError, match=re.escape(f"{folder / f'list_{which}.txt'} is empty;")):
        load_reid_dataset("msmt17", tmp_path)


def test_an_empty_val_list_is_fine_and_a_binary_list_is_named(tmp_path, no_network):
    folder = _msmt17(tmp_path, MSMT17_LISTS)
    (folder / "list_val.txt").write_text("")  # the val list is left out anyway
    assert len(load_reid_dataset("msmt17", tmp_path).train) == 3
    (folder / "list_query.txt").write_bytes("0000/0000_000_01_0303morning_0015_0.jpg 0\n".encode("utf-16"))
    with pytest.raises(ValueError) as raised:
        load_reid_dataset("msmt17", tmp_path)
    assert str(raised.value) == (
        f"{folder / 'list_query.txt'}: byte 0xff at offset 0 is not text (UTF-8); the list must be "
        "'PATH PID' lines: unzip MSMT17 again"
    )


def test_missing_cuhk03_fails_fast_without_download_or_folder(tmp_path, no_network):
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset("cuhk03", tmp_path)
    message = str(raised.value)
    base = tmp_path / "cuhk03"
    assert message.startswith(f"dataset not found: {base / 'cuhk03_release' / 'cuhk-03.mat'} is missing")
    assert "cuhk03_new_protocol_config_{detected,labeled}.mat" in message and "Li et al." in message
    assert "never downloads" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
    (base / "cuhk03_release").mkdir(parents=True)
    (base / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"")
    with pytest.raises(DataMissingError, match="cuhk03_new_protocol_config_detected.mat is missing"):
        load_reid_dataset("cuhk03", tmp_path)


def test_a_damaged_cuhk03_mat_is_one_line_and_leaves_no_half_conversion(tmp_path, no_network):
    base = tmp_path / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    for path in (
        "cuhk03_release/cuhk-03.mat",
        "cuhk03_new_protocol_config_detected.mat",
        "cuhk03_new_protocol_config_labeled.mat",
    ):
        (base / path).write_bytes(b"not a mat file")
    with pytest.raises(
        DataMissingError, match=r"could not convert .*cuhk-03.mat \(OSError: .*unpack it again"
    ) as raised:
        load_reid_dataset("cuhk03", tmp_path)
    assert "\n" not in str(raised.value)
    assert sorted(path.name for path in base.iterdir()) == [
        "cuhk03_new_protocol_config_detected.mat",
        "cuhk03_new_protocol_config_labeled.mat",
        "cuhk03_release",
    ]


def _cuhk03_converted(root):
    """CUHK03 as torchreid's class leaves it after its first use: the .mat files (only their
    presence is checked from then on), images_{detected,labeled}/ and the json splits, whose
    paths are those of the folder's first place (moved since)."""
    base = root / "cuhk03"
    (base / "cuhk03_release").mkdir(parents=True)
    for path in (
        "cuhk03_release/cuhk-03.mat",
        "cuhk03_new_protocol_config_detected.mat",
        "cuhk03_new_protocol_config_labeled.mat",
    ):
        (base / path).write_bytes(b"stand-in")
    names = [
        "1_001_1_01.png",
        "1_001_2_06.png",
        "1_002_1_01.png",
        "2_005_1_01.png",
        "2_005_2_07.png",
        "2_006_2_08.png",
    ]
    for kind in ("detected", "labeled"):
        _images(base / f"images_{kind}", names)

        def item(name, pid, kind=kind):
            return [f"/where/it/was/cuhk03/images_{kind}/{name}", pid, int(name.split("_")[2]) - 1]

        new = {
            "train": [item(names[0], 0), item(names[1], 0), item(names[2], 1)],
            "query": [item(names[3], 5)],
            "gallery": [item(names[4], 5), item(names[5], 6)],
        }
        test = [item(names[3], 0), item(names[4], 0), item(names[5], 1)]
        classic = [
            {"train": [item(names[0], 0), item(names[1], 0)], "query": test, "gallery": test},
            {"train": [item(names[2], 0)], "query": test, "gallery": test},
        ]
        (base / f"splits_new_{kind}.json").write_text(json.dumps([new]))
        (base / f"splits_classic_{kind}.json").write_text(json.dumps(classic))
    return base


def test_cuhk03_options_choose_boxes_and_split_through_torchreid(tmp_path, no_network):
    base = _cuhk03_converted(tmp_path)
    detected = load_reid_dataset("cuhk03", tmp_path)
    assert [(pid, cam) for _, pid, cam in detected.train] == [(0, 0), (0, 1), (1, 0)]
    assert [(pid, cam) for _, pid, cam in detected.gallery] == [(5, 1), (6, 1)]
    every = [path for split in (detected.train, detected.query, detected.gallery) for path, _, _ in split]
    assert all(path.startswith(str(base / "images_detected")) and Path(path).is_file() for path in every)

    labeled = load_reid_dataset("cuhk03", tmp_path, {"cuhk03_labeled": True})
    assert labeled.train[0][0] == str(base / "images_labeled" / "1_001_1_01.png")
    classic = load_reid_dataset("cuhk03", tmp_path, {"cuhk03_classic_split": True})
    assert len(classic.train) == 2 and classic.query == classic.gallery  # split 0 of the classic ones

    # the config's fields reach the loader, and a run's data is found again with its options
    config = build_config(dataset="cuhk03", arch="resnet50", root=str(tmp_path), cuhk03_labeled=True)
    assert load_data(config, log=lambda line: None) == labeled
    recorded = labeled.fingerprint()
    assert load_run_splits("cuhk03", tmp_path, recorded, "run", config.to_dict()) == labeled
    with pytest.raises(
        ValueError, match=r"trained and evaluated on: cuhk03_labeled False \(the run had True\); point"
    ):
        load_run_splits("cuhk03", tmp_path, recorded, "run")


def test_registry_entries_and_their_protocols():
    assert DATASETS["cuhk03"].options == ("cuhk03_labeled", "cuhk03_classic_split")
    assert DATASETS["cuhk03"].published_protocol() == "market1501"  # the new 767/700 protocol
    assert DATASETS["cuhk03"].published_protocol({"cuhk03_classic_split": True}) == "cuhk03"
    assert DATASETS["msmt17"].published_protocol({"cuhk03_classic_split": True}) == "market1501"
    for name in ("cuhk03", "msmt17", "folder"):
        assert DATASETS[name].recipe(None) == f"{name}_resnet50.yaml"
        assert DATASETS[name].strong["resnet50"] == f"{name}_resnet50_bot.yaml"


def test_train_cli_exits_2_with_the_one_line(tmp_path, capsys, no_network):
    code = train_main(
        [
            "--dataset",
            "cuhk03",
            "--arch",
            "resnet50",
            "--weights",
            "none",
            "--root",
            str(tmp_path),
            "--output",
            str(tmp_path / "run"),
            "--epochs",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].endswith("reidgraft never downloads.") and "cuhk-03.mat is missing" in err[-1]
    assert list(tmp_path.iterdir()) == []  # no cuhk03 folder, no run folder
