"""The threshold for a target false-merge rate, against the replays it is defined by; the re-entry
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


def looks(people: int, spread: float, seed: int = 0):
    """Features, pids and cameras of `people` people, 2 images in each of 2 cameras: each person a
    direction, each image that direction plus noise of size `spread`."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((people, 32)).astype(np.float32)
    features = np.repeat(centre, 4, axis=0) + spread * rng.standard_normal((4 * people, 32)).astype(
        np.float32
    )
    return features, np.repeat(np.arange(people), 4), np.tile([0, 0, 1, 1], people)


@pytest.mark.parametrize("target", [0.02, 0.1])
def test_the_threshold_is_the_lowest_whose_replays_merge_at_most_the_target(target):
    features, pids, camids = looks(24, spread=0.6)
    found = calibrate_threshold(features, pids, camids, target=target, orders=6)
    orders = [arrivals(pids, camids, 1000 + s) for s in range(6)]

    def merged(threshold):
        return np.mean([replay(features, order, threshold)["false_merges"] for order in orders])

    assert (
        found.false_merge_rate == pytest.approx(merged(found.threshold)) and merged(found.threshold) <= target
    )
    assert merged(found.threshold - 2e-3) > target  # (the bisection stops within 1e-3)
    assert found.identities == 24 and found.orders == 6 and 0 < found.reattach_rate <= 1
    looser = calibrate_threshold(features, pids, camids, target=2 * target, orders=6)
    assert looser.threshold <= found.threshold


def test_well_separated_people_are_all_re_attached_at_1_percent():
    features, pids, camids = looks(20, spread=0.05)
    found = calibrate_threshold(features, pids, camids, target=0.01, orders=3)
    assert found.false_merge_rate == 0 and found.reattach_rate == 1


@pytest.mark.parametrize("target", [0, 1, -0.5, 2, True])
def test_a_target_outside_0_1_is_one_line(target):
    features, pids, camids = looks(6, spread=0.1)
    with pytest.raises(ValueError, match="give a false-merge rate between 0 and 1"):
        calibrate_threshold(features, pids, camids, target=target)


def test_too_few_people_seen_twice_is_refused():
    features, pids, camids = looks(3, spread=0.1)
    with pytest.raises(ValueError, match="at least 4 held-out people each seen twice"):
        calibrate_threshold(features, pids, camids)
    with pytest.raises(ValueError, match="give 1 or more arrival orders"):
        calibrate_threshold(*looks(6, spread=0.1), orders=0)


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
    drawn = arrivals(pids, camids, 0, count=8)
    assert len({s.person for s in drawn}) == 8 and len(drawn) == 12
    with pytest.raises(ValueError, match="people 21: give 4 to 20"):
        arrivals(pids, camids, 0, count=21)


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
    # every first sighting but the very first is a new person merged into that first person's
    # identity, and so is every return but that person's own
    first = order[0].person
    returners = [s.person for s in order if s.returning]
    assert loose["new_attached"] == (people - 1) / people
    assert loose["reattached"] == (first in returners) / len(returners)
    merged_returns = len(returners) - (first in returners)
    assert loose["returns_merged"] == merged_returns / len(returners)
    assert loose["false_merges"] == pytest.approx((people - 1 + merged_returns) / len(order))
    summary = benchmark(features, pids, camids, 0.5, seeds=range(3))
    assert summary["reattached"] == (1.0, 0.0)


def test_calibration_on_a_runs_validation_identities(tiny_run, collapsed_val_run, val_run):
    import reidgraft

    with pytest.raises(ValueError, match="held out no validation identities"):
        calibrate_run(reidgraft.FeatureExtractor(tiny_run, model=0, device="cpu"))
    # one epoch on 32x16 images leaves the features nearly constant: nothing tells people apart
    with pytest.raises(ValueError, match="features do not tell the held-out people apart"):
        calibrate_run(reidgraft.FeatureExtractor(collapsed_val_run, device="cpu"))
    extractor = reidgraft.FeatureExtractor(val_run, device="cpu")
    found = calibrate_run(extractor, target=0.25)
    assert found.identities == 4 and found.orders == 20 and found.false_merge_rate <= 0.25
    assert found.model == extractor.digest and "4 validation identities of synthetic" in found.source
    save_calibration(found, val_run)
    assert load_calibration(val_run, model=extractor.digest) == found
    with pytest.raises(ValueError, match="was calibrated for model"):
        load_calibration(val_run, model="0" * 64)
    (val_run / "identity-threshold.json").unlink()
