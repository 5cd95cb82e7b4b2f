"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of a query-gallery distance matrix.

Follows the conventions of torchreid's `re_ranking` (the person-re-ranking code as torchreid and
fast-reid use it), so that the numbers agree with it:

- the pairwise distances among all query and gallery items are torchreid's
  `compute_distance_matrix` ones (squared L2 for "euclidean", 1 - cosine similarity for "cosine"),
  and are then SQUARED once more, as `re_ranking` does to the matrices it is given;
- that "original distance" is divided by its column max (the max distance to the item), row i
  holding the distances from item i;
- k-reciprocal sets R(i, k1) are expanded with the R(c, round(k1 / 2)) of their members c that share
  more than 2/3 of their items with R(i, k1); members get Gaussian weights exp(-d), normalised to 1;
- local query expansion replaces each weight vector by the mean over its k2 nearest items;
- the Jaccard distance is 1 - s / (2 - s), with s the sum of element-wise minima;
- the result is lambda * original + (1 - lambda) * jaccard, float32.

Memory and time: the dense (q + g) x (q + g) distance matrix is held (float32), so memory grows as
(q + g)^2: about 1.5 GB for Market-1501 (3,368 + 15,913 items), far too much for a 500k gallery.
The neighbour sets and weights are kept sparse (scipy.sparse), a few dozen entries per item.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse

__all__ = ["k_reciprocal_rerank"]

_VALID_METRICS = ("euclidean", "cosine")

# The floor on a feature's norm when L2-normalising, as torch.nn.functional.normalize uses.
_NORMALIZE_EPS = 1e-12


def k_reciprocal_rerank(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    *,
    metric: str = "euclidean",
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked query-gallery distances, (num_query x num_gallery) float32; smaller is closer.

    `k1` sizes the k-reciprocal neighbour sets, `k2` the local query expansion (1 turns it off),
    `lambda_value` weighs the normalised original distance against the Jaccard distance.
    """
    query = _features(query_features, "query_features")
    gallery = _features(gallery_features, "gallery_features")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_features has dim {query.shape[1]} but gallery_features has dim {gallery.shape[1]}; "
            "extract both with the same model"
        )
    if metric not in _VALID_METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {_VALID_METRICS}")
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")

    num_query = query.shape[0]
    original = _original_distance(np.concatenate([query, gallery]), metric)
    num_items = original.shape[0]

    # Only the first max(k1 + 1, k2) neighbours of each item are ever looked at.
    nearest = _nearest(original, min(max(k1 + 1, k2), num_items))
    reciprocal = _k_reciprocal(nearest[:, : k1 + 1], num_items)
    half_reciprocal = _k_reciprocal(nearest[:, : int(np.around(k1 / 2.0)) + 1], num_items)
    expanded = _expand(reciprocal, half_reciprocal)

    # Gaussian weights over each item's expanded set, normalised to sum to 1 per row.
    rows, cols = expanded.nonzero()
    weights = np.exp(-original[rows, cols])
    row_sums = np.bincount(rows, weights=weights, minlength=num_items).astype(np.float32)
    weights = (weights / row_sums[rows]).astype(np.float32)
    encoding = sparse.csr_matrix((weights, (rows, cols)), shape=(num_items, num_items), dtype=np.float32)

    if k2 != 1:
        # Local query expansion: the mean encoding over each item's k2 nearest items.
        neighbours = nearest[:, :k2]
        count = neighbours.shape[1]
        expansion = sparse.csr_matrix(
            (
                np.ones(neighbours.size, dtype=np.float32),
                (np.repeat(np.arange(num_items), count), neighbours.reshape(-1)),
            ),
            shape=(num_items, num_items),
        )
        encoding = (expansion @ encoding).astype(np.float32) / np.float32(count)
        encoding = sparse.csr_matrix(encoding)

    jaccard = _jaccard(encoding, num_query)
    final = (
        np.float32(1.0 - lambda_value) * jaccard + np.float32(lambda_value) * original[:num_query, num_query:]
    )
    return final.astype(np.float32, copy=False)


def _features(features: np.ndarray, name: str) -> np.ndarray:
    """`features` as a 2-D, non-empty, finite float32 array (no copy when it already is one)."""
    array = np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items x dim), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one item of dim >= 1, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf values; check the feature extraction")
    return array


def _original_distance(features: np.ndarray, metric: str) -> np.ndarray:
    """torchreid's distance among all items, squared as `re_ranking` does and divided by its column
    max, then transposed: row i holds the distances from item i (float32, (q + g) x (q + g))."""
    if metric == "cosine":
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        normalised = features / np.maximum(norms, np.float32(_NORMALIZE_EPS))
        distance = 1.0 - normalised @ normalised.T
    else:
        squared_norms = np.square(features).sum(axis=1)
        distance = features @ features.T
        distance *= -2.0
        distance += squared_norms[:, None]
        distance += squared_norms[None, :]
    np.square(distance, out=distance)
    column_max = distance.max(axis=0)
    # All items identical: every distance is 0; keep them 0 rather than 0 / 0.
    column_max[column_max == 0] = 1.0
    distance /= column_max[None, :]
    return np.ascontiguousarray(distance.T)


def _nearest(distance: np.ndarray, count: int) -> np.ndarray:
    """Indices of each row's `count` smallest distances, nearest first."""
    if count < distance.shape[1]:
        candidates = np.argpartition(distance, count - 1, axis=1)[:, :count]
        # Sort candidates by index first so that ties are broken by index (a stable order).
        candidates.sort(axis=1)
    else:
        candidates = np.broadcast_to(np.arange(distance.shape[1]), distance.shape)
    candidate_distances = np.take_along_axis(distance, candidates, axis=1)
    order = np.argsort(candidate_distances, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def _k_reciprocal(neighbours: np.ndarray, num_items: int) -> sparse.csr_matrix:
    """Boolean sparse matrix: [i, j] when j is among i's neighbours and i among j's."""
    num_neighbours = neighbours.shape[1]
    forward = sparse.csr_matrix(
        (
            np.ones(neighbours.size, dtype=bool),
            (np.repeat(np.arange(num_items), num_neighbours), neighbours.reshape(-1)),
        ),
        shape=(num_items, num_items),
    )
    return forward.multiply(forward.T).tocsr()


def _expand(reciprocal: sparse.csr_matrix, half_reciprocal: sparse.csr_matrix) -> sparse.csr_matrix:
    """Each item's k-reciprocal set, joined with the half-size set of each of its members that shares
    more than 2/3 of its items with it (torchreid's `k_reciprocal_expansion_index`)."""
    reciprocal_int = reciprocal.astype(np.int32)
    half_int = half_reciprocal.astype(np.int32)
    # overlap[i, c] = |R(c, k1/2) intersect R(i, k1)|, kept only where c is a member of R(i, k1).
    overlap = (reciprocal_int @ half_int.T).multiply(reciprocal_int).tocoo()
    half_sizes = np.asarray(half_int.sum(axis=1)).reshape(-1)
    keep = overlap.data > 2.0 / 3.0 * half_sizes[overlap.col]
    accepted = sparse.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.int32), (overlap.row[keep], overlap.col[keep])),
        shape=reciprocal.shape,
    )
    return ((reciprocal_int + accepted @ half_int) > 0).tocsr()


def _jaccard(encoding: sparse.csr_matrix, num_query: int) -> np.ndarray:
    """Jaccard distance 1 - s / (2 - s) from each query to each gallery item, s the sum over items
    of the element-wise minimum of the two encodings (non-zero in both)."""
    num_items = encoding.shape[0]
    gallery_by_column = encoding[num_query:].tocsc()
    jaccard = np.empty((num_query, num_items - num_query), dtype=np.float32)
    for query_index in range(num_query):
        start, end = encoding.indptr[query_index], encoding.indptr[query_index + 1]
        columns = encoding.indices[start:end]
        values = encoding.data[start:end]
        shared = gallery_by_column[:, columns].tocoo()
        minima = np.minimum(shared.data, values[shared.col])
        overlap = np.bincount(shared.row, weights=minima, minlength=num_items - num_query)
        overlap = overlap.astype(np.float32)
        jaccard[query_index] = 1.0 - overlap / (np.float32(2.0) - overlap)
    return jaccard
