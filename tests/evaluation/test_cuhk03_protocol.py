"""CUHK03's single-gallery-shot protocol (`evaluate(..., protocol="cuhk03")`): torchreid's
`eval_cuhk03`, but drawn from a seeded generator, so the same inputs give the same numbers."""

import itertools

import numpy as np
import pytest
import torch
from torchreid.reid.metrics.distance import compute_distance_matrix
from torchreid.reid.metrics.rank import evaluate_rank

from reidgraft.config import build_config
from reidgraft.data import ReidSplits
from reidgraft.engine.tasks import ReidTask
from reidgraft.evaluation import evaluate, retrieval


def _integer_example(seed: int = 3):
    """Several cameras, several items per identity, a distractor (pid 0), a query whose identity
    is absent from the gallery and one whose only gallery items share its camera. Integer
    features give exact squared distances, ties included (broken by gallery index)."""
    rng = np.random.default_rng(seed)
    gallery_pids = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 6])
    gallery_cams = np.array([0, 2, 0, 1, 2, 0, 0, 0, 1, 2, 2, 0, 0, 1, 1])
    query_pids = np.array([1, 2, 3, 3, 4, 5, 6, 9])
    query_cams = np.array([0, 1, 2, 0, 1, 2, 1, 0])
    query = rng.integers(0, 6, (len(query_pids), 2)).astype(np.float32)
    gallery = rng.integers(0, 6, (len(gallery_pids), 2)).astype(np.float32)
    return query, gallery, query_pids, gallery_pids, query_cams, gallery_cams


def _single_shot_reference(
    distances, query_pids, gallery_pids, query_cams, gallery_cams, max_rank, repeats, seed
):
    """The documented draws as plain loops: per query (all queries, in order), per draw, per
    gallery identity (ascending), one uniform u; it picks item floor(u * n) of that identity in
    gallery order, or of the query's own true matches (other cameras) for its own identity."""
    generator = np.random.default_rng(seed)
    identities = np.unique(gallery_pids)
    length = min(max_rank, len(gallery_pids))
    hits, valid, rank1_per_query = np.zeros(length), 0, []
    for i, (pid, cam) in enumerate(zip(query_pids, query_cams, strict=True)):
        uniform = generator.random((repeats, len(identities)))
        matches = [j for j in range(len(gallery_pids)) if gallery_pids[j] == pid and gallery_cams[j] != cam]
        if not matches:
            continue
        valid += 1
        rank1_per_query.append(0.0)
        for draw in range(repeats):
            drawn = []
            for k, identity in enumerate(identities):
                items = matches if identity == pid else list(np.flatnonzero(gallery_pids == identity))
                drawn.append(items[int(uniform[draw, k] * len(items))])
            ranked = sorted(drawn, key=lambda j: (distances[i, j], j))
            first = next(n for n, j in enumerate(ranked) if gallery_pids[j] == pid)
            hits[first:] += 1
            rank1_per_query[-1] += (first == 0) / repeats
    return hits / (valid * repeats), valid, np.array(rank1_per_query)


def test_equals_a_plain_loop_over_the_documented_draws():
    query, gallery, *labels = _integer_example()
    distances = ((query[:, None, :] - gallery[None, :, :]) ** 2).sum(axis=2)  # exact integers
    result = evaluate(query, gallery, *labels, max_rank=8, protocol="cuhk03", repeats=7, seed=5)
    expected_cmc, valid, rank1 = _single_shot_reference(distances, *labels, max_rank=8, repeats=7, seed=5)
    assert result.num_valid_queries == valid == 6  # pid 9 absent, pid 6 only under its own camera
    np.testing.assert_allclose(result.cmc, expected_cmc, rtol=0, atol=1e-6)
    market = evaluate(query, gallery, *labels, max_rank=8)
    assert not np.array_equal(result.cmc, market.cmc)  # the draws changed the curve
    # per query, the rank-1 share of its draws (what compare pairs), averaging to cmc[0]
    np.testing.assert_allclose(result.rank1_hits, rank1, rtol=0, atol=1e-12)
    assert result.rank1_hits.mean() == pytest.approx(result.cmc[0], abs=1e-6)
    np.testing.assert_array_equal(market.rank1_hits, market.first_hit_ranks == 1)


def test_same_inputs_same_numbers_whatever_the_chunking(monkeypatch):
    query, gallery, *labels = _integer_example()
    first = evaluate(query, gallery, *labels, protocol="cuhk03")
    assert evaluate(query, gallery, *labels, protocol="cuhk03") == first
    monkeypatch.setattr(retrieval, "_QUERY_CHUNK_SIZE", 1)  # one query per distance chunk
    assert evaluate(query, gallery, *labels, protocol="cuhk03") == first
    assert evaluate(query, gallery, *labels, protocol="cuhk03", seed=1) != first


def test_ap_and_minp_are_those_of_the_full_ranking_as_in_torchreid():
    query, gallery, *labels = _integer_example()
    single_shot = evaluate(query, gallery, *labels, protocol="cuhk03")
    market = evaluate(query, gallery, *labels)
    assert (single_shot.mAP, single_shot.mINP) == (market.mAP, market.mINP)
    assert np.isfinite(single_shot.mINP)
    np.testing.assert_array_equal(single_shot.average_precisions, market.average_precisions)


def test_each_identity_is_drawn_uniformly():
    """Query pid 1 (camera 0) has two true matches, at distances 1 and 9; pid 2's three items
    lie at 4, 16 and 25. Of the 6 equally likely draws, the match ranks first in 5 (the close
    match against any, the far one against 16 or 25): rank-1 = 5/6, rank-2 = 1."""
    query = np.array([[0.0]], dtype=np.float32)
    gallery = np.array([[1.0], [3.0], [2.0], [4.0], [5.0]], dtype=np.float32)
    labels = ([1], [1, 1, 2, 2, 2], [0], [1, 1, 1, 1, 1])
    combos = list(itertools.product([1, 9], [4, 16, 25]))
    assert sum(match < other for match, other in combos) / len(combos) == pytest.approx(5 / 6)
    result = evaluate(query, gallery, *labels, protocol="cuhk03", repeats=20000)
    assert result.rank1 == pytest.approx(5 / 6, abs=0.015)
    assert result.cmc[1] == 1.0
    assert result.rank1_hits.tolist() == pytest.approx([result.rank1], abs=1e-6)  # its draws' share
    market = evaluate(query, gallery, *labels)
    assert market.rank1 == 1.0 and market.rank1_hits.tolist() == [1.0]  # the close match ranks first


def test_without_a_choice_it_equals_torchreids_eval_cuhk03(monkeypatch):
    """One gallery item per identity, queries under other cameras: no draw has a choice, so
    torchreid's global-random draws and ours pick the same items."""
    rng = np.random.default_rng(0)
    gallery_pids = np.arange(12)
    gallery_cams = gallery_pids % 2
    query_pids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20])
    query_cams = np.full(len(query_pids), 2)
    query_cams[3] = 1  # pid 3's only gallery item shares its camera: skipped by both
    query = rng.normal(size=(len(query_pids), 16)).astype(np.float32)
    gallery = rng.normal(size=(len(gallery_pids), 16)).astype(np.float32)
    labels = (query_pids, gallery_pids, query_cams, gallery_cams)

    ours = evaluate(query, gallery, *labels, max_rank=10, protocol="cuhk03")
    monkeypatch.setattr(np, "bool", bool, raising=False)  # torchreid's python path uses np.bool
    distmat = compute_distance_matrix(torch.from_numpy(query), torch.from_numpy(gallery)).numpy()
    cmc, mAP = evaluate_rank(distmat, *labels, max_rank=10, use_metric_cuhk03=True, use_cython=False)
    assert ours.num_valid_queries == 9
    np.testing.assert_allclose(ours.cmc, cmc, rtol=0, atol=1e-6)
    assert ours.mAP == pytest.approx(mAP, abs=1e-9)


def test_bad_protocol_or_repeats_is_refused():
    query, gallery, *labels = _integer_example()
    with pytest.raises(ValueError, match="unknown protocol 'cuhk'; valid protocols are market1501, cuhk03"):
        evaluate(query, gallery, *labels, protocol="cuhk")
    with pytest.raises(ValueError, match="repeats must be an integer >= 1, got 0"):
        evaluate(query, gallery, *labels, protocol="cuhk03", repeats=0)


def test_the_configs_protocol_reaches_the_task_score():
    query, gallery, query_pids, gallery_pids, query_cams, gallery_cams = _integer_example()
    splits = ReidSplits(
        "street",
        [("t.jpg", 0, 0)],
        [(f"q{i}.jpg", int(p), int(c)) for i, (p, c) in enumerate(zip(query_pids, query_cams, strict=True))],
        [
            (f"g{i}.jpg", int(p), int(c))
            for i, (p, c) in enumerate(zip(gallery_pids, gallery_cams, strict=True))
        ],
    )
    features = ([torch.from_numpy(query)], [torch.from_numpy(gallery)])
    labels = (query_pids, gallery_pids, query_cams, gallery_cams)
    for protocol in ("market1501", "cuhk03"):
        task = ReidTask(build_config(metric_protocol=protocol, max_rank=8), splits)
        (row,) = task.score(*features)
        expected = evaluate(query, gallery, *labels, max_rank=8, protocol=protocol)
        assert (row["rank1"], row["rank5"]) == (expected.rank1, expected.rank5)
    assert row["rank1"] != evaluate(query, gallery, *labels, max_rank=8).rank1
