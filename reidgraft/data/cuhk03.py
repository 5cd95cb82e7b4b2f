"""CUHK03's one-time conversion, made safe: torchreid's CUHK03 class turns `cuhk-03.mat` into
png folders and json splits beside it on first use, writing straight into their final places,
so a damaged file or a Ctrl-C left half-converted folders that the next start took as done.

Here the files are checked first (each protocol `.mat` for what torchreid reads of it, the
release file for its three tables), torchreid converts into a staging folder that links to the
`.mat` files, and its outputs are moved into `<root>/cuhk03/` only when all are complete: the
json splits last, since torchreid takes the conversion as done when all six outputs exist. An
error names the file it comes from; nothing is left behind (a staging folder of a killed process
is removed at the next start).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import traceback
import warnings
from pathlib import Path

from ..files import process_start, writer_alive
from .splits import DataMissingError

RELEASE = Path("cuhk03_release") / "cuhk-03.mat"
KINDS = ("detected", "labeled")
# what the conversion makes, in the order it is moved into place (json last: the "done" mark)
CONVERTED = (
    *(f"images_{kind}" for kind in KINDS),
    *(f"splits_{split}_{kind}.json" for split in ("classic", "new") for kind in KINDS),
)
PROTOCOL_KEYS = ("train_idx", "query_idx", "gallery_idx", "labels", "filelist")  # torchreid reads these
RELEASE_TABLES = ("detected", "labeled", "testsets")
STAGING_PREFIX = ".cuhk03-conversion"
# torchreid's functions that read each file while converting, for telling which file failed
READS_PROTOCOL = {"_extract_new_split", "_extract_set"}


def protocol_file(base: Path, kind: str) -> Path:
    return base / f"cuhk03_new_protocol_config_{kind}.mat"


def split_file(base: Path, labeled: bool, classic: bool) -> Path:
    """The json split torchreid reads for these options."""
    return base / f"splits_{'classic' if classic else 'new'}_{'labeled' if labeled else 'detected'}.json"


def _unpack_again(path: Path, reason: str) -> DataMissingError:
    return DataMissingError(
        f"could not convert {path} ({reason}); it must be the complete cuhk-03.mat of the CUHK03 "
        "release: unpack it again"
    )


def _get_protocol_again(path: Path, reason: str) -> DataMissingError:
    return DataMissingError(
        f"{path} is not a CUHK03 new-protocol file ({reason}); get it again from Zhong et al.'s "
        "person-re-ranking repository"
    )


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def check_sources(base: Path) -> None:
    """DataMissingError naming the first `.mat` file that torchreid could not convert from."""
    import h5py
    from scipy.io import loadmat

    release = base / RELEASE
    try:
        with h5py.File(release, "r") as mat:
            absent = [name for name in RELEASE_TABLES if name not in mat]
    except (OSError, ValueError) as error:
        raise _unpack_again(release, _reason(error)) from None
    if absent:
        raise _unpack_again(release, f"it has no {absent[0]!r} table")
    for kind in KINDS:
        path = protocol_file(base, kind)
        try:
            protocol = loadmat(path)
        except Exception as error:  # scipy raises many kinds for a damaged file
            raise _get_protocol_again(path, _reason(error)) from None
        absent = [key for key in PROTOCOL_KEYS if key not in protocol]
        if absent:
            raise _get_protocol_again(path, f"it has no {absent[0]!r}")


def remove_stale_staging(base: Path) -> None:
    """Staging folders whose converting process is gone (killed with -9)."""
    for staging in base.glob(f"{STAGING_PREFIX}.*.tmp"):
        if staging.is_dir() and not writer_alive(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _failed_file(error: BaseException, stage: Path, base: Path) -> Path:
    """Which source file torchreid was reading when `error` stopped the conversion."""
    functions = {frame.name for frame in traceback.extract_tb(error.__traceback__)}
    if functions & READS_PROTOCOL:  # detected first; its json is written before labeled's is read
        done = (stage / "splits_new_detected.json").exists()
        return protocol_file(base, "labeled" if done else "detected")
    return base / RELEASE


def convert_once(base: Path) -> None:
    """Convert `<root>/cuhk03` (= `base`) as torchreid does, unless that is done: the outputs
    appear all together, or not at all."""
    remove_stale_staging(base)
    present = [name for name in CONVERTED if (base / name).exists()]
    if len(present) == len(CONVERTED):
        return
    if present:  # left by an older version's conversion that stopped; never ours to delete
        missing = [name for name in CONVERTED if name not in present]
        raise DataMissingError(
            f"{base} holds {', '.join(present)} but not {', '.join(missing)}: a conversion of "
            f"cuhk-03.mat that stopped half-way; remove {', '.join(present)} there and run again"
        )
    check_sources(base)
    writer = f"{os.getpid()}-{process_start(os.getpid()) or 0}"
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}.{writer}.", suffix=".tmp", dir=base))
    try:
        stage = staging / "cuhk03"
        (stage / RELEASE.parent).mkdir(parents=True)
        (stage / RELEASE).symlink_to((base / RELEASE).resolve())
        for kind in KINDS:
            protocol_file(stage, kind).symlink_to(protocol_file(base, kind).resolve())
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                from torchreid.reid.data.datasets.image.cuhk03 import CUHK03

                CUHK03(root=str(staging), verbose=False)
        except Exception as error:  # (AssertionError included: "campid0-pid3 has no images")
            failed = _failed_file(error, stage, base)
            if failed.name == RELEASE.name:
                raise _unpack_again(failed, _reason(error)) from None
            raise _get_protocol_again(failed, _reason(error)) from None
        for name in CONVERTED:
            os.replace(stage / name, base / name)
    finally:  # an error, Ctrl-C or SIGTERM: nothing half-converted stays
        shutil.rmtree(staging, ignore_errors=True)
