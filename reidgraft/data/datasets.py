"""Re-ID datasets by name, parsed by torchreid's own dataset classes.

torchreid's classes start an HTTP download when their folder is missing and leave an empty
folder behind; reidgraft checks the layout first and stops with one readable line instead.
Each dataset has a `check` (is the data there? no parsing, before any work) and a `load`; the
registry (`registry.py`) names them. The synthetic dataset is written once in Market-1501 layout
and read by torchreid's Market1501 class, so it takes exactly the path real data takes. `folder`
(a user's own crops, `folder.py`) is read by a class of ours registered with torchreid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import fingerprint
from .splits import SUBSETS, DataMissingError, ReidSplits, make_splits


@dataclass(frozen=True)
class RealDataset:
    """Where torchreid expects a public dataset in Market-1501 layout, and where a user gets it."""

    name: str
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

    def check(self, root: Path) -> None:
        """DataMissingError unless the three subsets are there (before torchreid could create a
        folder or start a download)."""
        self.data_dir(root)

    def load(self, root: Path) -> ReidSplits:
        self.check(root)
        return make_splits(self.name, *_parse_with_torchreid(self.torchreid_class, root))


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.jpg"))


MARKET1501 = RealDataset(
    name="market1501",
    folder="market1501",
    layouts=("Market-1501-v15.09.15", "."),
    source="Get Market-1501-v15.09.15.zip from its authors (Zheng et al., ICCV 2015) and unzip it "
    "into <root>/market1501/.",
    torchreid_class="market1501.Market1501",
)
DUKEMTMCREID = RealDataset(
    name="dukemtmcreid",
    folder="dukemtmc-reid",
    layouts=("DukeMTMC-reID",),
    source="Get DukeMTMC-reID.zip from its authors (Zheng et al., ICCV 2017) and unzip it "
    "into <root>/dukemtmc-reid/.",
    torchreid_class="dukemtmcreid.DukeMTMCreID",
)


CUHK03_SOURCE = (
    "Get cuhk03_release.zip from its authors (Li et al., CVPR 2014) and unzip it into <root>/cuhk03/; "
    "put the new-protocol files cuhk03_new_protocol_config_{detected,labeled}.mat (Zhong et al., "
    "CVPR 2017, in their person-re-ranking repository) beside it."
)
MSMT17_SOURCE = (
    "Get MSMT17 from its authors (Wei et al., CVPR 2018; on request at pkuvmc.com) and unzip it "
    "into <root>/msmt17/."
)
# torchreid's MSMT17 takes the first version folder that exists: its train and test folders.
MSMT17_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
MSMT17_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def _missing(missing: Path, layout: str, source: str, folder: str) -> DataMissingError:
    return DataMissingError(
        f"dataset not found: {missing} is missing; expected {layout}. {source} Or point --root "
        f"(or $REIDGRAFT_DATA) at the folder that holds {folder}/. reidgraft never downloads."
    )


def check_cuhk03(root: Path, **options: Any) -> None:
    cuhk03_dir(root)


def cuhk03_dir(root: Path) -> Path:
    """`<root>/cuhk03`, checked for the files torchreid's CUHK03 needs; DataMissingError otherwise,
    or when its one-time conversion of cuhk-03.mat lacks h5py or imageio."""
    import importlib.util

    base = root / "cuhk03"
    required = [
        base / "cuhk03_release" / "cuhk-03.mat",
        *(base / f"cuhk03_new_protocol_config_{kind}.mat" for kind in ("detected", "labeled")),
    ]
    missing = next((path for path in required if not path.is_file()), None)
    if missing is not None:
        layout = f"{required[0]} and {base}/cuhk03_new_protocol_config_{{detected,labeled}}.mat"
        raise _missing(missing, layout, CUHK03_SOURCE, "cuhk03")
    converted = [
        base / "images_detected",
        base / "images_labeled",
        *(
            base / f"splits_{split}_{kind}.json"
            for split in ("classic", "new")
            for kind in ("detected", "labeled")
        ),
    ]
    absent = [name for name in ("h5py", "imageio") if importlib.util.find_spec(name) is None]
    if absent and not all(path.exists() for path in converted):
        raise DataMissingError(
            f"cuhk03's first use converts {required[0]} into images, which needs {' and '.join(absent)}: "
            f"pip install {' '.join(absent)}"
        )
    return base


def check_msmt17(root: Path) -> None:
    msmt17_dir(root)


def msmt17_dir(root: Path) -> Path:
    """The MSMT17 version folder torchreid will read (V1 before V2), checked for its train and
    test folders and list files; DataMissingError naming the first thing missing."""
    base = root / "msmt17"
    version = next((name for name in MSMT17_VERSIONS if (base / name).is_dir()), "MSMT17_V1")
    folder = base / version
    train_dir, test_dir = MSMT17_VERSIONS[version]
    required = [folder, folder / train_dir, folder / test_dir, *(folder / name for name in MSMT17_LISTS)]
    missing = next((path for path in required if not path.exists()), None)
    if missing is not None:
        layout = (
            f"{base}/MSMT17_V1/{{train,test}}/ and {base}/MSMT17_V1/{{{','.join(MSMT17_LISTS)}}} "
            "(MSMT17_V2: mask_train_v2/ and mask_test_v2/)"
        )
        raise _missing(missing, layout, MSMT17_SOURCE, "msmt17")
    for list_name, image_dir in zip(MSMT17_LISTS, (train_dir, train_dir, test_dir, test_dir), strict=True):
        _check_msmt17_list(folder / list_name, folder / image_dir)
    return folder


def _check_msmt17_list(list_path: Path, image_dir: Path) -> None:
    """Every line as torchreid's MSMT17 reads it ('PATH PID', camera in PATH), and its image there;
    the train, query and gallery lists not empty (torchreid fails on them with an IndexError)."""
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{list_path}: byte {error.object[error.start]:#04x} at offset {error.start} is not text "
            "(UTF-8); the list must be 'PATH PID' lines: unzip MSMT17 again"
        ) from None
    if not lines and list_path.name != "list_val.txt":  # (the val list is not used)
        raise DataMissingError(
            f"{list_path} is empty; it must list 'PATH PID' lines: the MSMT17 folder is incomplete, "
            "unzip it again"
        )
    for number, line in enumerate(lines, start=1):
        parts = line.split(" ")
        try:
            if len(parts) != 2:
                raise ValueError
            int(parts[1]), int(parts[0].split("_")[2])
        except (ValueError, IndexError):
            raise ValueError(
                f"{list_path}:{number}: {line!r} is not 'PATH PID' with PATH like "
                "0000/0000_000_01_0303morning_0015_0.jpg; fix or remove that line"
            ) from None
        if not (image_dir / parts[0]).is_file():
            raise DataMissingError(
                f"{list_path}:{number} names {image_dir / parts[0]}, which is missing; the MSMT17 "
                "folder is incomplete: unzip it again"
            )


def _parse_with_torchreid(class_path: str, root: Path, **options: Any) -> tuple[list, list, list]:
    """Run torchreid's dataset class on a checked folder; return its train, query, gallery."""
    import importlib

    module_name, class_name = class_path.split(".")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # its Cython and layout notices; the layout is checked
        module = importlib.import_module(f"torchreid.reid.data.datasets.image.{module_name}")
        dataset = getattr(module, class_name)(root=str(root), verbose=False, **options)
    return dataset.train, dataset.query, dataset.gallery


def load_cuhk03(
    root: Path, *, cuhk03_labeled: bool = False, cuhk03_classic_split: bool = False
) -> ReidSplits:
    """CUHK03 through torchreid's class: detected boxes unless `cuhk03_labeled`; the new 767/700
    protocol unless `cuhk03_classic_split` (then the first of the 20 classic splits, whose query and
    gallery are the same test images). Its first use converts the .mat files into images and json
    splits under `<root>/cuhk03`, as torchreid does."""
    from .cuhk03 import convert_once, split_file

    base = cuhk03_dir(root)  # fail before torchreid can create a folder or download
    convert_once(base)  # (the first use only; checked, staged, all outputs or none)
    options = {"split_id": 0, "cuhk03_labeled": cuhk03_labeled, "cuhk03_classic_split": cuhk03_classic_split}
    try:
        train, query, gallery = _parse_with_torchreid("cuhk03.CUHK03", root, **options)
    except (OSError, KeyError, ValueError, IndexError, AssertionError, TypeError) as error:
        split = split_file(base, cuhk03_labeled, cuhk03_classic_split)
        reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        raise DataMissingError(
            f"could not read {split} ({reason}); it is damaged: remove images_detected/, "
            f"images_labeled/ and splits_*.json under {base} to convert cuhk-03.mat again"
        ) from None

    # torchreid's json splits hold the absolute paths of their first use; read them where the
    # images are now (<root>/cuhk03/images_{detected,labeled}/NAME), wherever the folder moved.
    def here(data):
        return [(str(base / Path(path).parent.name / Path(path).name), *rest) for path, *rest in data]

    splits = make_splits("cuhk03", here(train), here(query), here(gallery))
    return dataclasses.replace(
        splits, options={key: options[key] for key in ("cuhk03_labeled", "cuhk03_classic_split")}
    )


def load_msmt17(root: Path) -> ReidSplits:
    """MSMT17 through torchreid's class (its train list only: the val list is left out, as
    published results do)."""
    msmt17_dir(root)  # fail before torchreid can create a folder or download
    return make_splits("msmt17", *_parse_with_torchreid("msmt17.MSMT17", root))


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
        "manifest_sha256": fingerprint(manifest),
    }
    splits = make_splits("synthetic", *_parse_with_torchreid(MARKET1501.torchreid_class, synthetic_root))
    return dataclasses.replace(splits, generator=generator)


def check_synthetic(root: Path) -> None:
    """Nothing to check: the synthetic set is written on first use."""
