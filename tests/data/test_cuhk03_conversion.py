"""CUHK03's first use converts cuhk-03.mat (HDF5) and the new-protocol .mat files into images and
json splits through torchreid's own class. Here a tiny release in the real file formats is made
with h5py and scipy: it converts, and each way it can fail names its file, with nothing left
half-converted (the outputs appear all together or not at all)."""

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from reidgraft.data import DataMissingError, load_reid_dataset
from reidgraft.data.cuhk03 import CONVERTED

SOURCES = [
    "cuhk03_new_protocol_config_detected.mat",
    "cuhk03_new_protocol_config_labeled.mat",
    "cuhk03_release",
]
# persons 1-3 of camera pair 1, each seen in view 1 (image 1) and view 2 (image 6)
NAMES = [f"1_{pid:03d}_{view}_{image:02d}.png" for pid in (1, 2, 3) for view, image in ((1, 1), (2, 6))]


def _release(base, empty_person=None):
    """cuhk-03.mat as the release lays it out: per box type, one table per camera pair of image
    references (persons x 10 images; empty cells for missing images); testsets of [pair, person]."""
    (base / "cuhk03_release").mkdir(parents=True)
    with h5py.File(base / "cuhk03_release" / "cuhk-03.mat", "w") as mat:
        empty = mat.create_dataset("empty", data=np.zeros(2, dtype=np.uint64))
        for kind in ("detected", "labeled"):
            pictures = [
                mat.create_dataset(f"{kind}_{n}", data=np.full((3, 12, 6), 40 * n, np.uint8))
                for n in range(6)
            ]
            table = mat.create_dataset(
                f"{kind}_pair1", shape=(10, 3), dtype=h5py.ref_dtype
            )  # stored transposed
            for person in range(3):
                for image in range(10):
                    table[image, person] = empty.ref
                if person != empty_person:
                    table[0, person], table[5, person] = (
                        pictures[2 * person].ref,
                        pictures[2 * person + 1].ref,
                    )
            boxes = mat.create_dataset(kind, shape=(1, 1), dtype=h5py.ref_dtype)
            boxes[0, 0] = table.ref
        test = mat.create_dataset("test1", data=np.array([[1], [3]], dtype=np.float64))  # pair 1, person 3
        testsets = mat.create_dataset("testsets", shape=(1, 1), dtype=h5py.ref_dtype)
        testsets[0, 0] = test.ref


def _protocol(path, gallery_index=6):
    filelist = np.empty((len(NAMES), 1), dtype=object)
    for index, name in enumerate(NAMES):
        filelist[index, 0] = name
    savemat(path, {
        "filelist": filelist, "labels": np.array([[1], [1], [2], [2], [3], [3]]),
        "train_idx": np.array([[1], [2], [3], [4]]), "query_idx": np.array([[5]]),
        "gallery_idx": np.array([[gallery_index]]),
    })  # fmt: skip


def _cuhk03(root, **release):
    base = root / "cuhk03"
    _release(base, **release)
    for kind in ("detected", "labeled"):
        _protocol(base / f"cuhk03_new_protocol_config_{kind}.mat")
    return base


def test_a_release_converts_once_through_torchreid(tmp_path, no_network):
    base = _cuhk03(tmp_path)
    splits = load_reid_dataset("cuhk03", tmp_path)
    assert sorted(path.name for path in base.iterdir()) == sorted([*SOURCES, *CONVERTED])  # no staging left
    assert sorted(path.name for path in (base / "images_detected").iterdir()) == sorted(NAMES)
    assert [(pid, cam) for _, pid, cam in splits.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(pid, cam) for _, pid, cam in splits.query] == [(3, 0)]
    assert splits.gallery[0][0] == str(base / "images_detected" / NAMES[5])  # where the images are
    classic = load_reid_dataset("cuhk03", tmp_path, {"cuhk03_classic_split": True})  # no second conversion
    assert len(classic.query) == 2 and len(classic.train) == 4


def test_a_person_without_images_is_blamed_on_the_release_and_leaves_nothing(tmp_path, no_network):
    base = _cuhk03(tmp_path, empty_person=1)  # torchreid asserts: "campid0-pid1 has no images"
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset("cuhk03", tmp_path)
    assert str(raised.value) == (
        f"could not convert {base / 'cuhk03_release' / 'cuhk-03.mat'} (AssertionError: campid0-pid1 "
        "has no images); it must be the complete cuhk-03.mat of the CUHK03 release: unpack it again"
    )
    assert sorted(path.name for path in base.iterdir()) == SOURCES


@pytest.mark.parametrize("damage", ["garbage", "no gallery", "index out of range"])
def test_a_damaged_protocol_file_is_blamed_on_itself(tmp_path, no_network, damage):
    base = _cuhk03(tmp_path)
    labeled = base / "cuhk03_new_protocol_config_labeled.mat"
    if damage == "garbage":
        labeled.write_bytes(b"not a mat file")
    elif damage == "no gallery":
        savemat(
            labeled,
            {
                "filelist": np.zeros(1),
                "labels": np.zeros(1),
                "train_idx": np.zeros(1),
                "query_idx": np.zeros(1),
            },
        )
    else:
        _protocol(labeled, gallery_index=60)
    with pytest.raises(
        DataMissingError, match=rf"^{labeled} is not a CUHK03 new-protocol file \(.*\); get it again"
    ) as raised:
        load_reid_dataset("cuhk03", tmp_path)
    assert "\n" not in str(raised.value)
    assert {"no gallery": "it has no 'gallery_idx'", "index out of range": "IndexError"}.get(
        damage, ""
    ) in str(raised.value)
    assert sorted(path.name for path in base.iterdir()) == SOURCES


def test_ctrl_c_during_the_conversion_leaves_nothing_and_the_next_start_converts(
    tmp_path, no_network, monkeypatch
):
    import imageio

    base = _cuhk03(tmp_path)
    written = []
    original = imageio.imwrite

    def interrupted(path, image, *args, **kwargs):  # Ctrl-C lands while the third image is written
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt
        return original(path, image, *args, **kwargs)

    monkeypatch.setattr(imageio, "imwrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_reid_dataset("cuhk03", tmp_path)
    assert sorted(path.name for path in base.iterdir()) == SOURCES
    monkeypatch.setattr(imageio, "imwrite", original)
    assert len(load_reid_dataset("cuhk03", tmp_path).train) == 4


def test_a_staging_folder_of_a_killed_conversion_is_removed_and_a_half_conversion_named(tmp_path, no_network):
    base = _cuhk03(tmp_path)
    leftover = base / ".cuhk03-conversion.4194303-1.abc.tmp"  # (no such process)
    (leftover / "cuhk03" / "images_detected").mkdir(parents=True)
    (base / "images_detected").mkdir()  # what an older version left when stopped
    with pytest.raises(DataMissingError) as raised:
        load_reid_dataset("cuhk03", tmp_path)
    assert str(raised.value).startswith(
        f"{base} holds images_detected but not images_labeled, splits_classic_detected.json"
    ) and str(raised.value).endswith(
        "a conversion of cuhk-03.mat that stopped half-way; remove images_detected there and run again"
    )
    assert not leftover.exists() and (base / "images_detected").is_dir()  # ours gone, the rest kept


def test_a_damaged_json_split_is_named(tmp_path, no_network):
    base = _cuhk03(tmp_path)
    load_reid_dataset("cuhk03", tmp_path)
    (base / "splits_new_labeled.json").write_text("[{")
    with pytest.raises(
        DataMissingError, match=rf"^could not read {base / 'splits_new_labeled.json'} \(JSONDecodeError"
    ):
        load_reid_dataset("cuhk03", tmp_path, {"cuhk03_labeled": True})
    assert len(load_reid_dataset("cuhk03", tmp_path).train) == 4  # the detected boxes' split still reads
