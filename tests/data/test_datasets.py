import socket

import pytest
from PIL import Image

from reidgraft.data import DataMissingError, load_reid_dataset
from reidgraft.data.datasets import SUBSETS


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (torchreid would try a download)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


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
