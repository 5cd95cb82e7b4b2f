import warnings

import numpy as np
import pytest
import torch

import reidgraft.evaluation.retrieval as retrieval
from reidgraft.evaluation import CollapsedEmbeddingWarning, RetrievalResult, evaluate, topk_accuracy

with warnings.catch_warnings():
    # torchreid warns at import that its Cython evaluator is absent; the python one is the reference.
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics.distance import compute_distance_matrix
    from torchreid.reid.metrics.rank import evaluate_rank


def synthetic_reid_split(seed: int, num_query=60, num_gallery=400, num_ids=30, num_cameras=6, dim=32):
    """Features = identity centre + camera offset + noise: same-id items are correlated, same-camera
    items more so (the removal matters), and pid-0 distractors are pure noise."""
    rng = np.random.default_rng(seed)
    id_centres = rng.normal(size=(num_ids + 2, dim))
    camera_offsets = 0.6 * rng.normal(size=(num_cameras, dim))

    def items(count, distractor_fraction):
        pids = rng.integers(1, num_ids + 1, size=count)
        pids[rng.random(count) < distractor_fraction] = 0
        camids = rng.integers(0, num_cameras, size=count)
        features = id_centres[pids] + camera_offsets[camids] + 1.1 * rng.normal(size=(count, dim))
        features[pids == 0] = 1.5 * rng.normal(size=((pids == 0).sum(), dim))
        return features.astype(np.float32), pids, camids

    query_features, query_pids, query_camids = items(num_query, 0.0)
    gallery_features, gallery_pids, gallery_camids = items(num_gallery, 0.15)
    # A few queries whose identity the gallery never shows: both evaluators must skip them.
    query_pids[:3] = num_ids + 1
    return query_features, gallery_features, query_pids, gallery_pids, query_camids, gallery_camids


def torchreid_distances(split, metric):
    query_features, gallery_features = split[:2]
    return compute_distance_matrix(
        torch.from_numpy(query_features), torch.from_numpy(gallery_features), metric=metric
    ).numpy()


def reference_minp(distmat, query_pids, gallery_pids, query_camids, gallery_camids):
    """fast-reid's mINP, one query at a time: relevant count / 1-based rank of the last hit."""
    inverse_negative_penalties = []
    for row, pid, camid in zip(distmat, query_pids, query_camids):
        order = np.argsort(row, kind="stable")
        kept = order[~((gallery_pids[order] == pid) & (gallery_camids[order] == camid))]
        hit_positions = np.flatnonzero(gallery_pids[kept] == pid)
        if len(hit_positions):
            inverse_negative_penalties.append(len(hit_positions) / (hit_positions[-1] + 1))
    return np.mean(inverse_negative_penalties), len(inverse_negative_penalties)


def torchreid_scores(split, metric, max_rank):
    query_pids, gallery_pids, query_camids, gallery_camids = split[2:]
    distmat = torchreid_distances(split, metric)
    return evaluate_rank(
        distmat,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        max_rank=max_rank,
        use_metric_cuhk03=False,
        use_cython=False,
    )


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchreid_evaluate_rank(seed, metric):
    split = synthetic_reid_split(seed)
    expected_cmc, expected_map = torchreid_scores(split, metric, max_rank=50)

    result = evaluate(*split, metric=metric, max_rank=50)

    assert result.mAP == pytest.approx(expected_map, abs=1e-6)
    expected_minp, expected_valid = reference_minp(torchreid_distances(split, metric), *split[2:])
    assert result.mINP == pytest.approx(expected_minp, abs=1e-9)
    assert result.num_valid_queries == expected_valid == 57
    assert len(result.cmc) == 50
    assert np.array_equal(result.cmc, expected_cmc[:50])
    # Neither trivially perfect nor hopeless, so the comparison means something.
    assert 0.1 < result.mAP < 0.95 and 0.1 < result.rank1 < 1.0
    assert result.rank5 == pytest.approx(expected_cmc[4]) and result.rank10 == pytest.approx(expected_cmc[9])


def test_matches_torchreid_when_max_rank_exceeds_gallery():
    # No query shares a camera with its own identity in the gallery, so torchreid removes nothing
    # and its curve has the gallery's length (it shortens max_rank to the gallery size).
    query_features, gallery_features, query_pids, gallery_pids, query_camids, gallery_camids = (
        synthetic_reid_split(3, num_query=10, num_gallery=20)
    )
    query_camids = np.full_like(query_camids, 99)
    split = (query_features, gallery_features, query_pids, gallery_pids, query_camids, gallery_camids)
    expected_cmc, expected_map = torchreid_scores(split, "euclidean", max_rank=50)

    result = evaluate(*split, max_rank=50)

    assert len(result.cmc) == 20
    assert np.array_equal(result.cmc, expected_cmc)
    assert result.mAP == pytest.approx(expected_map, abs=1e-6)
    assert result.rank10 == result.cmc[9]


def line_features(positions):
    """1-D features: the squared euclidean distance between two items is (a - b) ** 2, exactly."""
    return np.asarray(positions, dtype=np.float32)[:, None]


def test_hand_built_query_with_known_scores():
    # Gallery items on a line, the query at 0. Ranked by distance: 0 (pid 7, cam 0: same pid and
    # camera, would rank first, must be ignored), 1 (pid 2), 2 (pid 7: hit), 3 (distractor),
    # 4 (pid 3), 5 (pid 7: hit), 6 (pid 4). After removal the hits are at ranks 2 and 5 of 6.
    gallery_positions = [4, 0, 1, 2, 3, 5, 6]
    gallery_pids = [3, 7, 2, 7, 0, 7, 4]
    gallery_camids = [1, 0, 1, 1, 2, 2, 3]

    result = evaluate(
        line_features([0]), line_features(gallery_positions), [7], gallery_pids, [0], gallery_camids
    )

    assert result.num_valid_queries == 1
    assert result.mAP == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert result.mINP == pytest.approx(2 / 5)
    # 7 gallery items give a curve of 7; the list after removal has 6, and past its end the
    # query stays matched.
    assert result.cmc.tolist() == [0, 1, 1, 1, 1, 1, 1]
    assert result.as_dict() == {
        "mAP": pytest.approx(0.45),
        "mINP": pytest.approx(0.4),
        "rank1": 0.0,
        "rank5": 1.0,
        "rank10": 1.0,
        "num_valid_queries": 1,
    }


def test_hand_built_cosine_ranks_by_angle_not_length():
    # Long vectors along the query's direction are cosine-close though euclidean-far.
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    gallery = np.array([[10.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    pids, camids = [5, 6, 5], [1, 1, 1]

    cosine = evaluate(query, gallery, [5], pids, [0], camids, metric="cosine")
    euclidean = evaluate(query, gallery, [5], pids, [0], camids, metric="euclidean")

    assert cosine.cmc.tolist() == [1, 1, 1] and cosine.mAP == pytest.approx((1 + 2 / 3) / 2)
    # Euclidean: [1, 1] (dist 1) first, then [0, 1] (dist 2), then [10, 0] (dist 81).
    assert euclidean.cmc.tolist() == [0, 1, 1] and euclidean.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert euclidean.mINP == pytest.approx(2 / 3)


def test_query_without_cross_camera_match_is_skipped():
    gallery = line_features([1, 2, 3, 4])
    gallery_pids = [1, 1, 2, 3]
    gallery_camids = [0, 1, 0, 0]
    # Query 0 (pid 1, cam 0) matches the item at 2; query 1 (pid 2, cam 0) only has a same-camera
    # item; query 2 (pid 9) is absent from the gallery.
    result = evaluate(line_features([0, 0, 0]), gallery, [1, 2, 9], gallery_pids, [0, 0, 0], gallery_camids)

    assert result.num_valid_queries == 1
    assert result.mAP == 1.0 and result.mINP == 1.0
    assert result.cmc.tolist() == [1, 1, 1, 1]


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query has a cross-camera match"):
        evaluate(line_features([0]), line_features([1, 2]), [1], [1, 2], [0], [0, 0])


def torchreid_with_stable_sort(monkeypatch, distmat, *labels, max_rank=50):
    """torchreid's evaluate_rank on a stably sorted ranking (its own argsort is quicksort)."""
    argsort = np.argsort
    monkeypatch.setattr(np, "argsort", lambda array, axis=-1, **_: argsort(array, axis=axis, kind="stable"))
    try:
        return evaluate_rank(distmat, *labels, max_rank=max_rank, use_metric_cuhk03=False, use_cython=False)
    finally:
        monkeypatch.setattr(np, "argsort", argsort)


def test_at_equal_distance_the_earlier_gallery_item_ranks_first():
    # Small integers make every distance exact, so the three gallery items tie exactly.
    query = np.array([[1.0, 2.0, 0.0]], dtype=np.float32)
    gallery = np.tile(np.array([[2.0, 0.0, 1.0]], dtype=np.float32), (3, 1))

    with pytest.warns(CollapsedEmbeddingWarning, match="1 of 1 queries have more than half"):
        match_last = evaluate(query, gallery, [1], [4, 5, 1], [0], [1, 1, 1])
        match_first = evaluate(query, gallery, [1], [1, 4, 5], [0], [1, 1, 1])

    assert match_first.cmc.tolist() == [1, 1, 1] and match_first.mAP == 1.0
    assert match_last.cmc.tolist() == [0, 0, 1] and match_last.mAP == pytest.approx(1 / 3)


def test_ties_in_a_long_gallery_follow_gallery_order(monkeypatch):
    # 30 items on three exact distances (1, 4, 9), interleaved, with matches scattered among them:
    # the expected ranking sorts by (distance, gallery index), written out independently of numpy.
    positions = [(1, 2, 3)[index % 3] for index in range(30)]
    gallery_pids = [1 if index in (4, 7, 13, 21, 29) else 2 + index % 4 for index in range(30)]
    ranked = sorted(range(30), key=lambda index: (positions[index] ** 2, index))
    hit_ranks = [rank + 1 for rank, index in enumerate(ranked) if gallery_pids[index] == 1]
    expected_ap = sum((hit + 1) / rank for hit, rank in enumerate(hit_ranks)) / len(hit_ranks)

    with warnings.catch_warnings():  # 10 of 30 tie at each distance: not a collapse
        warnings.simplefilter("error", CollapsedEmbeddingWarning)
        result = evaluate(line_features([0]), line_features(positions), [1], gallery_pids, [0], [1] * 30)

    assert result.mAP == pytest.approx(expected_ap, abs=1e-12)
    assert result.mINP == pytest.approx(len(hit_ranks) / hit_ranks[-1], abs=1e-12)
    assert result.cmc.tolist() == [float(rank >= hit_ranks[0]) for rank in range(1, 31)]
    distmat = np.array([[p**2 for p in positions]], dtype=np.float32)
    cmc, mean_ap = torchreid_with_stable_sort(
        monkeypatch,
        distmat,
        np.array([1]),
        np.array(gallery_pids),
        np.array([0]),
        np.ones(30, dtype=int),
        max_rank=30,
    )
    assert result.mAP == pytest.approx(mean_ap, abs=1e-6) and np.array_equal(result.cmc, cmc)


@pytest.mark.parametrize("value", [0.0, 1.0])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_constant_features_score_as_torchreid_with_a_stable_sort_and_warn(monkeypatch, metric, value):
    # A collapsed embedding: every distance ties. It once scored a perfect 1.0.
    split = list(synthetic_reid_split(5))
    split[0] = np.full_like(split[0], value)
    split[1] = np.full_like(split[1], value)
    distmat = compute_distance_matrix(torch.from_numpy(split[0]), torch.from_numpy(split[1]), metric=metric)
    expected_cmc, expected_map = torchreid_with_stable_sort(monkeypatch, distmat.numpy(), *split[2:])

    with pytest.warns(CollapsedEmbeddingWarning, match="60 of 60 queries"):
        result = evaluate(*split, metric=metric)

    assert result.mAP == pytest.approx(expected_map, abs=1e-6) and result.mAP < 0.2
    assert np.array_equal(result.cmc, expected_cmc[:50])


def test_a_healthy_embedding_gives_no_collapse_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapsedEmbeddingWarning)
        evaluate(*synthetic_reid_split(0))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_distances_that_overflow_float32_are_refused(metric):
    split = list(synthetic_reid_split(0))
    split[0], split[1] = split[0] * 1e20, split[1] * 1e20
    if metric == "cosine":  # normalised first, so only the raw norms overflow, and they are not used
        result = evaluate(*split, metric=metric)
        assert 0.1 < result.mAP < 0.95
        return
    with pytest.raises(
        ValueError, match="euclidean distances are not finite: the features' squared norms overflow"
    ):
        evaluate(*split, metric=metric)


def test_chunking_does_not_change_the_result(monkeypatch):
    split = synthetic_reid_split(4, num_query=50, num_gallery=120)
    whole = evaluate(*split, metric="cosine", max_rank=20)
    monkeypatch.setattr(retrieval, "_QUERY_CHUNK_SIZE", 7)
    chunked = evaluate(*split, metric="cosine", max_rank=20)

    assert chunked.num_valid_queries == whole.num_valid_queries
    assert chunked.mAP == pytest.approx(whole.mAP, abs=1e-12)
    assert chunked.mINP == pytest.approx(whole.mINP, abs=1e-12)
    assert np.array_equal(chunked.cmc, whole.cmc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_inputs_match_numpy(dtype, metric):
    query_features, gallery_features, *labels = synthetic_reid_split(5, num_query=20, num_gallery=80)
    query_tensor = torch.from_numpy(query_features).to(dtype)
    gallery_tensor = torch.from_numpy(gallery_features).to(dtype)
    tensor_labels = [torch.from_numpy(label) for label in labels]

    from_torch = evaluate(query_tensor, gallery_tensor, *tensor_labels, metric=metric, max_rank=10)
    # The same values numpy sees after the tensor's own rounding (float16 loses precision).
    from_numpy = evaluate(
        query_tensor.float().numpy(), gallery_tensor.float().numpy(), *labels, metric=metric, max_rank=10
    )

    assert from_torch == from_numpy
    assert from_torch.cmc.dtype == np.float32


def test_result_is_read_only_and_compares_by_value():
    result = RetrievalResult(
        mAP=0.5, mINP=0.25, cmc=np.array([0.5, 1.0], dtype=np.float32), num_valid_queries=2
    )
    with pytest.raises(ValueError):
        result.cmc[0] = 1.0
    assert result == RetrievalResult(0.5, 0.25, np.array([0.5, 1.0], dtype=np.float32), 2)
    assert result != RetrievalResult(0.5, 0.25, np.array([1.0, 1.0], dtype=np.float32), 2)
    # Shorter than 5 and 10: those ranks read the curve's last value.
    assert (result.rank1, result.rank5, result.rank10) == (0.5, 1.0, 1.0)
    assert all(type(value) is float for key, value in result.as_dict().items() if key != "num_valid_queries")
    assert type(result.as_dict()["num_valid_queries"]) is int


def valid_arguments():
    return dict(
        query_features=np.zeros((2, 3), dtype=np.float32),
        gallery_features=np.ones((4, 3), dtype=np.float32),
        query_pids=np.array([1, 2]),
        gallery_pids=np.array([1, 2, 1, 2]),
        query_camids=np.array([0, 0]),
        gallery_camids=np.array([1, 1, 1, 1]),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"query_pids": np.array([1, 2, 3])},
            "query_pids must be 1-D with one entry per row of query_features",
        ),
        (
            {"gallery_pids": np.array([1, 2])},
            "gallery_pids must be 1-D with one entry per row of gallery_features",
        ),
        ({"query_camids": np.array([0])}, "query_camids must be 1-D"),
        ({"gallery_camids": np.zeros((4, 1))}, "gallery_camids must be 1-D"),
        ({"gallery_features": np.ones((4, 5), dtype=np.float32)}, "differ in dimension: 3 vs 5"),
        (
            {"query_features": np.zeros((0, 3)), "query_pids": np.array([]), "query_camids": np.array([])},
            "empty",
        ),
        (
            {
                "gallery_features": np.zeros((0, 3)),
                "gallery_pids": np.array([]),
                "gallery_camids": np.array([]),
            },
            "gallery_features is empty",
        ),
        ({"query_features": np.zeros(3)}, "query_features must be 2-D"),
        ({"gallery_features": np.full((4, 3), np.nan)}, "NaN or infinite"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'; valid metrics are euclidean, cosine"),
        ({"max_rank": 0}, "max_rank must be an integer >= 1"),
        ({"max_rank": 2.5}, "max_rank must be an integer >= 1"),
        # labels: a string camera never equals an integer one; None and NaN are not identities
        (
            {"query_camids": np.array(["0", "0"])},
            r"query_camids holds strings such as '0': labels must be integers",
        ),
        ({"gallery_pids": [1, None, 1, 2]}, r"gallery_pids\[1\] is None: labels must be integers"),
        ({"query_pids": np.array([1.0, np.nan])}, r"query_pids\[1\] is nan: labels must be integers"),
        ({"gallery_camids": np.array([1, 1, 1.5, 1])}, r"gallery_camids\[2\] is 1.5"),
        ({"gallery_pids": np.array([True, False, True, False])}, "gallery_pids holds bool values"),
    ],
)
def test_bad_input_raises_clear_value_error(changes, message):
    arguments = valid_arguments()
    keyword_only = {key: changes.pop(key) for key in ("metric", "max_rank") if key in changes}
    arguments.update(changes)
    with pytest.raises(ValueError, match=message):
        evaluate(*arguments.values(), **keyword_only)


def test_labels_that_are_integers_exactly_score_as_integers():
    split = synthetic_reid_split(0)
    as_floats = [*split[:2], *(labels.astype(np.float64) for labels in split[2:])]
    as_objects = [*split[:2], *(np.array(labels.tolist(), dtype=object) for labels in split[2:])]
    assert evaluate(*as_floats) == evaluate(*as_objects) == evaluate(*split)


def test_topk_accuracy_on_hand_built_logits():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],  # target 1: top-1 hit
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],  # target 4: 5th highest, top-5 hit only
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],  # target 5: 6th highest, a miss
            [0.7, 0.7, 0.0, 0.0, 0.0, 0.0],  # target 1: tied with class 0, which comes first
        ]
    )
    targets = torch.tensor([1, 4, 5, 1])

    assert topk_accuracy(logits, targets) == {"top1": 0.25, "top5": 0.75}
    assert topk_accuracy(logits.numpy(), targets.numpy(), ks=(2, 6)) == {"top2": 0.5, "top6": 1.0}


@pytest.mark.parametrize(
    ("logits", "targets", "ks", "message"),
    [
        (np.zeros(6), np.array([0]), (1,), "logits must be a non-empty 2-D"),
        (np.zeros((0, 6)), np.zeros(0, dtype=int), (1,), "logits must be a non-empty 2-D"),
        (np.zeros((2, 6)), np.array([0, 1, 2]), (1,), r"targets must have shape \(2,\)"),
        (np.zeros((2, 6)), np.array([0.0, 1.0]), (1,), "integer class indices"),
        (np.zeros((2, 6)), np.array([0, 6]), (1,), r"targets must lie in \[0, 6\)"),
        (np.zeros((2, 3)), np.array([0, 1]), (1, 5), r"every k must lie in \[1, 3\]"),
        (np.zeros((2, 6)), np.array([0, 1]), (), "non-empty sequence of integers"),
        (np.full((2, 6), np.nan), np.array([0, 1]), (1,), "logits contain NaN"),
    ],
)
def test_topk_accuracy_rejects_bad_input(logits, targets, ks, message):
    with pytest.raises(ValueError, match=message):
        topk_accuracy(logits, targets, ks=ks)


def test_rerank_scores_the_reranked_distances():
    from reidgraft.evaluation import k_reciprocal_rerank

    split = synthetic_reid_split(6, num_query=30, num_gallery=120)
    query, gallery, query_pids, gallery_pids, query_camids, gallery_camids = split
    plain = evaluate(*split)
    reranked = evaluate(*split, rerank=True)
    distances = k_reciprocal_rerank(query, gallery)
    cmc, mean_ap = evaluate_rank(
        distances, query_pids, gallery_pids, query_camids, gallery_camids, max_rank=50, use_cython=False
    )
    assert reranked.mAP == pytest.approx(mean_ap, abs=1e-6)
    assert np.array_equal(reranked.cmc, cmc[:50])
    assert reranked.mAP != pytest.approx(plain.mAP, abs=1e-6)  # re-ranking changed something


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_torchreid_with_two_cameras(metric):
    # With two cameras a query keeps only the other camera's images of its person: many
    # queries lose every match and must be skipped by both evaluators alike.
    split = synthetic_reid_split(7, num_query=80, num_gallery=150, num_ids=40, num_cameras=2)
    expected_cmc, expected_map = torchreid_scores(split, metric, max_rank=20)
    result = evaluate(*split, metric=metric, max_rank=20)
    _, expected_valid = reference_minp(torchreid_distances(split, metric), *split[2:])
    assert result.num_valid_queries == expected_valid < 77
    assert result.mAP == pytest.approx(expected_map, abs=1e-6)
    assert np.array_equal(result.cmc, expected_cmc[:20])
