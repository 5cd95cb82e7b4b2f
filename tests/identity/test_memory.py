"""IdentityMemory on hand-made features: who is re-attached, who is new, what is kept, saved and
refused."""

import json
import threading

import numpy as np
import pytest

from reidgraft.identity.memory import FILE, FORMAT, IdentityMemory

DIM = 8


def person(index: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Person `index`'s appearance: one axis of the feature space, plus a little noise."""
    feature = np.zeros(DIM, np.float32)
    feature[index] = 1
    return feature + noise * np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def test_a_returning_person_is_re_attached_and_a_stranger_is_new():
    memory = IdentityMemory(DIM, threshold=0.8)
    assert memory.observe("door", 0, [7], person(0)[None]) == [1]
    assert memory.observe("door", 1, [7], person(0, 0.05, 1)[None]) == [1]  # the same track
    # the person leaves; the tracker gives them a new track in another camera
    assert memory.observe("hall", 5, [3], person(0, 0.1, 2)[None]) == [1]
    assert memory.observe("hall", 6, [4], person(1)[None]) == [2]  # a stranger
    assert memory.last_seen(1) == (5, "hall") and memory.identity_of("door", 7) == 1
    assert memory.identities[1].sightings == 3


def test_two_tracks_of_one_frame_are_never_one_identity():
    memory = IdentityMemory(DIM, threshold=0.5)
    memory.observe("cam", 0, [1], person(0)[None])
    # track 1 still shows identity 1 in this frame: the look-alike new track 2 must be someone else
    assert memory.observe("cam", 1, [1, 2], np.stack([person(0), person(0, 0.1)])) == [1, 2]
    # two new look-alikes of person 0 in one frame elsewhere: both match identity 1 best (the
    # pure look, beside identity 2's noisy one); only the closer takes it, the other the next best
    looks = np.stack([person(0, 0.05, 4), person(0, 0.01, 3)])
    assert [best[0][0] for best in memory.search(looks, k=2)] == [1, 1]  # each alone would take 1
    assert memory.observe("cam2", 3, [8, 9], looks) == [2, 1]


def test_a_track_stays_pending_until_confirmed_and_the_bank_is_bounded():
    memory = IdentityMemory(DIM, threshold=0.9, confirm_after=2, bank_size=3, enrol_every=2)
    assert memory.observe("cam", 0, [1], person(0)[None]) == [None]
    assert memory.observe("cam", 1, [1], person(0)[None]) == [1]
    for when in range(2, 12):
        memory.observe("cam", when, [1], person(0, 0.01, when)[None])
    assert len(memory.identities[1].bank) == 3  # oldest dropped, newest kept
    assert memory.tracks[("cam", 1)].last_enrolled == 11  # every second time unit: 3, 5, 7, 9, 11


def test_unusable_rows_are_counted_not_enrolled():
    memory = IdentityMemory(DIM, threshold=0.9)
    bad = np.stack([np.full(DIM, np.nan, np.float32), np.zeros(DIM, np.float32)])
    assert memory.observe("cam", 0, [1, 2], bad) == [None, None]
    assert memory.skipped == 2 and len(memory) == 0
    memory.observe("cam", 1, [1], person(0)[None])
    assert memory.observe("cam", 2, [1], np.full((1, DIM), np.inf, np.float32)) == [1]  # keeps its identity
    assert memory.skipped == 3 and len(memory.identities[1].bank) == 1


def test_bad_settings_and_inputs_are_one_line():
    with pytest.raises(ValueError, match="needs a threshold and will not guess one"):
        IdentityMemory(DIM, threshold=None)
    with pytest.raises(ValueError, match=r"threshold must be a cosine similarity in \[-1, 1\]"):
        IdentityMemory(DIM, threshold=1.5)
    with pytest.raises(ValueError, match="bank_size must be a whole number"):
        IdentityMemory(DIM, threshold=0.5, bank_size=0)
    memory = IdentityMemory(DIM, threshold=0.5)
    with pytest.raises(ValueError, match="features have 4 values each, the memory holds 8"):
        memory.observe("cam", 0, [1], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="repeats one"):
        memory.observe("cam", 0, [1, 1], np.ones((2, DIM), np.float32))
    with pytest.raises(ValueError, match="give rows of 8 values"):
        memory.search(np.ones((1, 16), np.float32))
    numpy_settings = IdentityMemory(np.int64(DIM), np.float32(0.5), bank_size=np.int32(4))  # numpy's own
    assert (numpy_settings.dim, numpy_settings.bank_size) == (DIM, 4) and numpy_settings.threshold == 0.5


def test_forget_drops_old_identities_and_their_tracks():
    memory = IdentityMemory(DIM, threshold=0.8)
    memory.observe("cam", 0, [1], person(0)[None])
    memory.observe("cam", 10, [2], person(1)[None])
    assert memory.forget(before=5) == 1
    assert set(memory.identities) == {2} and set(memory.tracks) == {("cam", 2)}
    # person 0 comes back: a new identity, since the memory forgot them
    assert memory.observe("cam", 11, [3], person(0)[None]) == [3]


def test_save_and_load_keep_every_decision(tmp_path):
    memory = IdentityMemory(DIM, threshold=0.8, model="abc123", calibration={"target": 0.01})
    for when, (track, who) in enumerate([(1, 0), (2, 1), (1, 0), (3, 2)]):
        memory.observe("cam", when, [track], person(who, 0.05, when)[None])
    memory.save(tmp_path)
    loaded = IdentityMemory.load(tmp_path, dim=DIM, model="abc123")
    assert loaded.calibration == {"target": 0.01} and loaded.threshold == memory.threshold
    assert set(loaded.identities) == set(memory.identities) and loaded.next_number == memory.next_number
    for number, identity in memory.identities.items():
        np.testing.assert_array_equal(np.stack(loaded.identities[number].bank), np.stack(identity.bank))
    assert loaded.identity_of("cam", 2) == 2
    # both decide a returning person and a stranger alike
    for copy in (memory, loaded):
        assert copy.observe("hall", 9, [5, 6], np.stack([person(1, 0.1, 9), person(5)])) == [2, 4]


def test_a_memory_of_another_model_or_size_is_refused(tmp_path):
    IdentityMemory(DIM, threshold=0.8, model="abc123").save(tmp_path)
    with pytest.raises(ValueError, match="it is another model's memory"):
        IdentityMemory.load(tmp_path, dim=16)
    with pytest.raises(ValueError, match="features of two models do not compare"):
        IdentityMemory.load(tmp_path, model="def456")
    with pytest.raises(ValueError, match="no identity-memory.npz here"):
        IdentityMemory.load(tmp_path / "elsewhere")
    saved = (tmp_path / FILE).read_bytes()
    for damaged in (b"not a memory", saved[: len(saved) // 2]):  # (a file cut short: not a zip)
        (tmp_path / FILE).write_bytes(damaged)
        with pytest.raises(ValueError, match="is not a reidgraft identity memory"):
            IdentityMemory.load(tmp_path)
    header = np.frombuffer(json.dumps({"format": FORMAT}).encode(), dtype=np.uint8)  # no fields
    np.savez(tmp_path / FILE, header=header, banks=np.zeros((0, DIM), np.float32))
    with pytest.raises(ValueError, match="is not a reidgraft identity memory"):
        IdentityMemory.load(tmp_path)


def test_a_save_stopped_mid_write_leaves_the_saved_memory_as_it_was(tmp_path, monkeypatch):
    memory = IdentityMemory(DIM, threshold=0.8)
    memory.observe("cam", 0, [1], person(0)[None])
    memory.save(tmp_path)
    before = (tmp_path / FILE).read_bytes()
    memory.observe("cam", 1, [2], person(1)[None])

    def stopped(file, **arrays):
        file.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", stopped)
    with pytest.raises(KeyboardInterrupt):
        memory.save(tmp_path)
    assert (tmp_path / FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]  # no temporary left behind
    monkeypatch.undo()
    assert len(IdentityMemory.load(tmp_path)) == 1


def test_one_writer_beside_readers():
    memory = IdentityMemory(DIM, threshold=0.8)
    errors = []

    def write():
        for when in range(300):
            memory.observe(f"cam{when % 3}", when, [when], person(when % DIM, 0.05, when)[None])

    def read():
        try:
            for _ in range(300):
                for row in memory.search(person(0)[None], k=3):
                    assert all(-1.01 <= similarity <= 1.01 for _, similarity in row)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(memory) == DIM  # each of the 8 people, seen 37-38 times, is one identity
