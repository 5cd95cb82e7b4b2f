import warnings

import numpy as np
import pytest
import torch

from reidgraft.evaluation.rerank import k_reciprocal_rerank

with warnings.catch_warnings():
    # torchreid warns at import that its Cython evaluator is absent; its python code is the reference.
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics.distance import compute_distance_matrix
    from torchreid.reid.utils.rerank import re_ranking


def clustered_features(seed: int, num_query=12, num_gallery=40, num_ids=8, dim=16):
    """Identity centre + noise: same-identity items are neighbours, so the k-reciprocal sets are
    non-trivial and overlap."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    query = centres[rng.integers(0, num_ids, size=num_query)] + 0.8 * rng.normal(size=(num_query, dim))
    gallery = centres[rng.integers(0, num_ids, size=num_gallery)] + 0.8 * rng.normal(size=(num_gallery, dim))
    return query.astype(np.float32), gallery.astype(np.float32)


def torchreid_distances(query, gallery, metric):
    """torchreid's three distance matrices (query-gallery, query-query, gallery-gallery) as numpy."""
    q, g = torch.from_numpy(query), torch.from_numpy(gallery)
    return tuple(compute_distance_matrix(a, b, metric).numpy() for a, b in ((q, g), (q, q), (g, g)))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(
    "k1, k2, lambda_value",
    [(20, 6, 0.3), (5, 1, 0.5), (3, 3, 0.1), (60, 70, 0.3)],  # the last: k1, k2 beyond q + g = 52
)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torchreid_re_ranking(metric, k1, k2, lambda_value, seed):
    query, gallery = clustered_features(seed)
    expected = re_ranking(
        *torchreid_distances(query, gallery, metric), k1=k1, k2=k2, lambda_value=lambda_value
    )

    result = k_reciprocal_rerank(query, gallery, metric=metric, k1=k1, k2=k2, lambda_value=lambda_value)

    assert result.dtype == np.float32
    assert result.shape == (12, 40)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5)
    # Not a degenerate case: the distances spread out, so a wrong neighbour set would show.
    assert np.ptp(result) > 0.1


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_defaults_are_the_papers(metric):
    query, gallery = clustered_features(3)
    expected = re_ranking(*torchreid_distances(query, gallery, metric), k1=20, k2=6, lambda_value=0.3)
    np.testing.assert_allclose(k_reciprocal_rerank(query, gallery, metric=metric), expected, atol=1e-5)


def test_reranking_changes_the_order_of_some_query():
    query, gallery = clustered_features(0)
    q_g_dist, _, _ = torchreid_distances(query, gallery, "euclidean")

    result = k_reciprocal_rerank(query, gallery)

    original_order = np.argsort(q_g_dist, axis=1, kind="stable")
    reranked_order = np.argsort(result, axis=1, kind="stable")
    assert (original_order != reranked_order).any(axis=1).sum() >= 1
    # Even the top-1 match moves for some query (4 of the 12 here).
    assert (q_g_dist.argmin(axis=1) != result.argmin(axis=1)).any()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_lambda_one_is_the_normalised_original_distance(metric):
    query, gallery = clustered_features(2)
    q_g_dist, q_q_dist, _ = torchreid_distances(query, gallery, metric)

    result = k_reciprocal_rerank(query, gallery, metric=metric, lambda_value=1.0)

    # torchreid squares the given distances, then divides each query's row by the max over the
    # column of that query in the full (q + g) x (q + g) matrix.
    squared = q_g_dist.astype(np.float64) ** 2
    column_max = np.maximum(squared.max(axis=1), (q_q_dist.astype(np.float64) ** 2).max(axis=0))
    np.testing.assert_allclose(result, squared / column_max[:, None], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.argsort(result, axis=1), np.argsort(q_g_dist, axis=1))


def test_accepts_float64_and_a_single_query():
    query, gallery = clustered_features(4, num_query=1)
    expected = re_ranking(*torchreid_distances(query, gallery, "euclidean"))
    result = k_reciprocal_rerank(query.astype(np.float64), gallery.astype(np.float64))
    assert result.shape == (1, 40)
    np.testing.assert_allclose(result, expected, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query_features": np.zeros(16)}, "query_features must be 2-D"),
        ({"gallery_features": np.zeros((2, 3, 16))}, "gallery_features must be 2-D"),
        ({"query_features": np.zeros((0, 16))}, "at least one item"),
        ({"gallery_features": np.zeros((40, 8))}, "has dim 16 but gallery_features has dim 8"),
        ({"query_features": np.full((12, 16), np.nan)}, "NaN or inf"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ({"k1": 0}, "k1 must be a positive integer"),
        ({"k2": -1}, "k2 must be a positive integer"),
        ({"k1": 2.5}, "k1 must be a positive integer"),
        ({"lambda_value": 1.5}, r"lambda_value must be in \[0, 1\]"),
        ({"lambda_value": -0.1}, r"lambda_value must be in \[0, 1\]"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, message):
    query, gallery = clustered_features(0)
    arguments = {"query_features": query, "gallery_features": gallery, **kwargs}
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(arguments.pop("query_features"), arguments.pop("gallery_features"), **arguments)
