import errno

import pytest
import torch

from reidgraft.files import DiskFull, atomic_write


class InterruptedFile:
    """A file whose n-th write is hit by Ctrl-C, as a SIGINT during torch.save would be."""

    def __init__(self, file, at: int):
        self.file, self.at, self.writes = file, at, 0

    def write(self, data):
        self.writes += 1
        if self.writes == self.at:
            raise KeyboardInterrupt
        return self.file.write(data)

    def flush(self):
        self.file.flush()


def test_ctrl_c_inside_torch_save_stays_a_ctrl_c_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1}, path)
    payload = {"weights": torch.zeros(100_000), "more": torch.ones(100_000)}
    # torch's C++ zip writer turns the interrupt into "RuntimeError: ... unexpected pos"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, lambda file: torch.save(payload, InterruptedFile(file, at=3)))
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class FullFile(InterruptedFile):
    """A file on a disk that fills up at its n-th write."""

    def write(self, data):
        self.writes += 1
        if self.writes >= self.at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)


def test_a_full_disk_inside_torch_save_names_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1}, path)
    payload = {"weights": torch.zeros(100_000)}
    # torch's zip writer reports the OSError as its own "RuntimeError: ... unexpected pos"
    with pytest.raises(DiskFull, match=f"^no space left on the device holding {path};"):
        atomic_write(path, lambda file: torch.save(payload, FullFile(file, at=3)))
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_real_full_disk_is_named(small_disk):
    disk = small_disk(1)
    path = disk / "checkpoint.pt"
    with pytest.raises(DiskFull, match=f"holding {path};") as raised:
        atomic_write(path, lambda file: torch.save({"weights": torch.zeros(1_000_000)}, file))
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, OSError)
    assert not list(disk.iterdir())  # the half-written file is gone: the disk is free again


def test_other_write_errors_are_not_taken_for_ctrl_c(tmp_path):
    def fail(file):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(tmp_path / "x.pt", fail)
    assert not list(tmp_path.iterdir())


def test_keyed_arrays_come_back_only_under_their_key(tmp_path):
    import numpy as np

    from reidgraft.files import read_keyed_arrays, write_keyed_arrays

    path = tmp_path / "cache.npz"
    write_keyed_arrays(path, "model A\0images B", {"features": np.arange(6.0).reshape(2, 3)})
    stored = read_keyed_arrays(path, "model A\0images B")
    assert list(stored) == ["features"] and stored["features"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert read_keyed_arrays(path, "model A\0images C") is None
    assert read_keyed_arrays(tmp_path / "absent.npz", "model A\0images B") is None
    path.write_bytes(path.read_bytes()[:100])  # damaged: as good as absent
    assert read_keyed_arrays(path, "model A\0images B") is None
    for name in ("key", "file"):
        with pytest.raises(ValueError, match=f"array name '{name}' is reserved"):
            write_keyed_arrays(path, "k", {name: np.zeros(1)})
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_an_error_while_handling_a_ctrl_c_is_reported_as_itself(tmp_path):
    def disk_full(file):
        raise OSError(28, "No space left on device")

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        with pytest.raises(DiskFull, match="^no space left on the device holding .*metrics.json;"):
            atomic_write(tmp_path / "metrics.json", disk_full)
    assert not list(tmp_path.iterdir())


def test_written_files_get_a_plain_files_mode(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write(tmp_path / "metrics.json", lambda file: file.write(b"{}"))
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_json_files_never_hold_nan(tmp_path):
    from reidgraft.files import atomic_write_json

    with pytest.raises(ValueError, match="would hold a value JSON cannot represent"):
        atomic_write_json(tmp_path / "report.json", {"ratio": float("nan")})
    assert not list(tmp_path.iterdir())


def test_one_fingerprint_scheme_that_keeps_recorded_fingerprints():
    """Every key and recorded hash is files.Fingerprint: SHA-256 of the parts as given. A run's
    data fingerprint (`items_sha256`, saved in every checkpoint) is what it was before the
    helper existed: the hash of its listing's lines."""
    import hashlib

    from reidgraft.data.splits import ReidSplits
    from reidgraft.files import Fingerprint, fingerprint, json_fingerprint

    assert (
        fingerprint("a", b"\0b") == hashlib.sha256(b"a\0b").hexdigest() == Fingerprint("a").add(b"\0b").hex()
    )
    assert json_fingerprint({"b": 1, "a": [2]}) == hashlib.sha256(b'{"a": [2], "b": 1}').hexdigest()
    assert fingerprint("ab") != fingerprint("a", "c")
    splits = ReidSplits("x", [("/d/train/1.jpg", 0, 0)], [("/d/q/2.jpg", 5, 1)], [("/d/g/3.jpg", 5, 0)])
    listing = "train\ttrain/1.jpg\t0\t0\nquery\tq/2.jpg\t5\t1\ngallery\tg/3.jpg\t5\t0\n"
    assert splits.fingerprint()["items_sha256"] == hashlib.sha256(listing.encode()).hexdigest()


def test_outputs_a_user_made_or_changed_are_never_overwritten(tmp_path):
    from reidgraft.files import check_own_outputs, record_outputs

    names = ["report.json", "pictures"]
    check_own_outputs(tmp_path, names, "--output")  # nothing there yet
    (tmp_path / "report.json").write_text("theirs")
    with pytest.raises(
        ValueError, match=r"report.json was not written by reidgraft; choose another --output"
    ):
        check_own_outputs(tmp_path, names, "--output")
    check_own_outputs(tmp_path, names, "--output", ours=True)  # a run folder's older outputs
    (tmp_path / "pictures").mkdir()
    record_outputs(tmp_path, names)
    check_own_outputs(tmp_path, names, "--output")  # ours now
    (tmp_path / "report.json").write_text("edited by hand")
    with pytest.raises(ValueError, match="report.json was changed since reidgraft wrote it"):
        check_own_outputs(tmp_path, names, "--output", ours=True)


def test_an_output_whose_write_stopped_half_way_stays_reidgrafts(tmp_path):
    from reidgraft.files import check_own_outputs, claim_outputs

    claim_outputs(tmp_path, ["report.json"])
    (tmp_path / "report.json").write_text('{"half')  # the write stopped here
    check_own_outputs(tmp_path, ["report.json"], "--output")  # not refused on the rerun


def test_a_reused_pid_is_not_the_writer(tmp_path):
    import os

    from reidgraft.files import new_temporary, process_start, writer_alive

    mine = new_temporary(tmp_path / "x.json")
    assert writer_alive(mine)
    if process_start(os.getpid()) is not None:  # (a system with /proc)
        assert not writer_alive(tmp_path / f".x.json.{os.getpid()}-1.abcdefgh.tmp")  # another start


def test_fingerprints_follow_content_not_location(tmp_path):
    import torch

    from reidgraft.files import files_fingerprint, state_fingerprint

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.jpg").write_bytes(b"same bytes")
    here = files_fingerprint([tmp_path / "a" / "x.jpg"], tmp_path / "a")
    assert here == files_fingerprint([tmp_path / "b" / "x.jpg"], tmp_path / "b")
    (tmp_path / "b" / "x.jpg").write_bytes(b"other bytes")
    assert here != files_fingerprint([tmp_path / "b" / "x.jpg"], tmp_path / "b")

    state = {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.bfloat16)}
    base = state_fingerprint(state, extra=("resnet50", 256))
    assert base == state_fingerprint(dict(reversed(state.items())), extra=("resnet50", 256))
    assert base != state_fingerprint(state, extra=("resnet50", 128))
    changed = {**state, "w": torch.tensor([1.0, 1.0, 1.0 + 2**-20])}
    assert base != state_fingerprint(changed, extra=("resnet50", 256))
