"""The threshold for a target false-merge rate, against a hand computation; the re-entry
benchmark's bookkeeping on features whose answers are known; calibration on a run's own
validation identities."""

import numpy as np
import pytest

from reidgraft.identity.calibration import (
    calibrate_run,
    calibrate_threshold,
    load_calibration,
    save_calibration,
)
from reidgraft.identity.reentry import arrivals, benchmark, replay


def sightings_of(enrolled: np.ndarray, returning: np.ndarray):
    """Features, pids and cameras of people whose camera-0 image is `enrolled[i]` and whose
    camera-1 image is `returning[i]`."""
    count = len(enrolled)
    features = np.concatenate([enrolled, returning])
    return features, np.tile(np.arange(count), 2), np.repeat([0, 1], count)


def test_the_threshold_lets_through_at_most_the_target_share_of_impostor_pairs():
    # three people on three unit axes, each return tilted toward the next person: the impostor
    # similarities are known by hand
    angle = np.array([0.2, 0.5, 0.8])
    eye = np.eye(3, dtype=np.float32)
    returning = np.stack([np.cos(angle[i]) * eye[i] + np.sin(angle[i]) * eye[(i + 1) % 3] for i in range(3)])
    features, pids, camids = sightings_of(eye, returning)
    # impostor similarities: sin(0.2), sin(0.5), sin(0.8) and three zeros (6 pairs)
    one = calibrate_threshold(features, pids, camids, target=1 / 6)  # one pair may merge
    assert one.threshold == pytest.approx(np.sin(0.5), abs=1e-6) and one.threshold > np.float32(np.sin(0.5))
    assert one.false_merge_rate == pytest.approx(1 / 6) and one.impostor_pairs == 6
    # genuine similarities cos(0.2), cos(0.5), cos(0.8) all exceed sin(0.5)
    assert one.reattach_rate == 1.0 and one.identities == 3
    none = calibrate_threshold(features, pids, camids, target=0.1)  # below 1 of 6: nothing may merge
    assert none.threshold > np.float32(np.sin(0.8)) and none.false_merge_rate == 0
    assert none.reattach_rate == pytest.approx(2 / 3)  # cos(0.8) = 0.697 < sin(0.8) = 0.717


@pytest.mark.parametrize("target", [0, 1, -0.5, 2, True])
def test_a_target_outside_0_1_is_one_line(target):
    features, pids, camids = sightings_of(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="give a false-merge rate between 0 and 1"):
        calibrate_threshold(features, pids, camids, target=target)


def test_too_few_people_seen_twice_is_refused():
    features = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="at least 2 held-out people each seen twice"):
        calibrate_threshold(features, np.array([0, 1, 2]), np.array([0, 0, 1]))


def test_every_return_comes_after_its_first_sighting_and_half_return():
    pids, camids = np.repeat(np.arange(20), 4), np.tile([0, 0, 1, 1], 20)
    for seed in range(5):
        order = arrivals(pids, camids, seed)
        returns = [s.person for s in order if s.returning]
        assert len(returns) == 10 and len(order) == 30
        for position, sighting in enumerate(order):
            if sighting.returning:
                firsts = [i for i, s in enumerate(order) if s.person == sighting.person and not s.returning]
                assert firsts and firsts[0] < position
    assert [s.person for s in arrivals(pids, camids, 0)] != [s.person for s in arrivals(pids, camids, 1)]


def test_replay_counts_reattachments_and_merges():
    rng = np.random.default_rng(0)
    people = 16
    look = np.linalg.qr(rng.standard_normal((32, 32)))[0][:people].astype(np.float32)  # orthonormal
    features = np.repeat(look, 4, axis=0) + 0.02 * rng.standard_normal((4 * people, 32)).astype(np.float32)
    pids, camids = np.repeat(np.arange(people), 4), np.tile([0, 0, 1, 1], people)
    order = arrivals(pids, camids, 0)
    good = replay(features, order, threshold=0.5)
    assert good["reattached"] == 1 and good["false_merges"] == 0 and good["new_attached"] == 0
    strict = replay(features, order, threshold=1.0)  # nothing is that similar: every return is new
    assert strict["reattached"] == 0 and strict["false_merges"] == 0
    loose = replay(features, order, threshold=-1.0)  # everyone merges into the first identity
    # every first sighting but the very first is a new person merged; every return keeps its ID
    assert loose["new_attached"] == (people - 1) / people and loose["reattached"] == 1
    assert loose["false_merges"] == pytest.approx((people - 1) / len(order))
    summary = benchmark(features, pids, camids, 0.5, seeds=range(3))
    assert summary["reattached"] == (1.0, 0.0)


def test_calibration_on_a_runs_validation_identities(tmp_path_factory, tiny_run):
    import reidgraft
    from reidgraft.config import build_config
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.engine import Trainer

    with pytest.raises(ValueError, match="held out no validation identities"):
        calibrate_run(reidgraft.FeatureExtractor(tiny_run, model=0, device="cpu"))
    root = tmp_path_factory.mktemp("data")
    splits = synthetic_splits(
        root, train_ids=10, test_ids=4, images_per_id=6, distractors=2, height=32, width=16
    )
    config = build_config(
        dataset="synthetic", root=str(root), models=1, epochs=1, batch_size=8, height=32, width=16,
        optimizer="sgd", lr=0.01, device="cpu", val_ids=4,
    )  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    Trainer(config, splits, run, log=lambda line: None).fit()  # (it holds the 4 out itself)
    extractor = reidgraft.FeatureExtractor(run, device="cpu")
    found = calibrate_run(extractor, target=0.25)
    assert found.identities == 4 and found.impostor_pairs == 12 and found.false_merge_rate <= 0.25
    assert found.model == extractor.digest and "4 validation identities of synthetic" in found.source
    save_calibration(found, run)
    assert load_calibration(run, model=extractor.digest) == found
    with pytest.raises(ValueError, match="was calibrated for model"):
        load_calibration(run, model="0" * 64)
