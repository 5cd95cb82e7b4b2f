"""Exact re-ID retrieval metrics (mAP, CMC, mINP) under the Market-1501 / DukeMTMC protocol.

The protocol is torchreid's `evaluate_rank` (market1501 mode): for each query, the gallery items
showing the same person under the same camera are removed before ranking; a query whose identity
has no remaining gallery item is skipped. Distractors (pid 0) are ordinary negatives. mINP is
fast-reid's. Exact and fast: GEMM distance blocks per chunk of queries, ranks counted without sorting.

`protocol="cuhk03"` gives CUHK03's single-gallery-shot CMC (torchreid's `eval_cuhk03`), drawn from
a seeded generator so that the same inputs always give the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

VALID_METRICS = ("euclidean", "cosine")
VALID_PROTOCOLS = ("market1501", "cuhk03")

# Queries ranked per step: bounds memory to a few (chunk x gallery) arrays instead of the full matrix.
# With the 2^25-entry bound in `evaluate`, Market-1501 takes two chunks; MKL's GEMM ran about 10%
# faster on ~2k-row chunks than on 1k-row ones on a 2-core CPU.
_QUERY_CHUNK_SIZE = 4096

# The floor on a feature's norm when L2-normalising, as torch.nn.functional.normalize uses.
_NORMALIZE_EPS = 1e-12


class CollapsedEmbeddingWarning(UserWarning):
    """Most of a query's gallery distances are equal: the features carry almost no information."""


@dataclass(frozen=True)
class RetrievalResult:
    """The scores of one query set against one gallery.

    `cmc[k]` is the fraction of valid queries whose first correct match is within rank k + 1; its
    length is `min(max_rank, gallery size)`, as torchreid's. `mAP` and `mINP` are fractions too.
    """

    mAP: float
    mINP: float
    cmc: np.ndarray
    num_valid_queries: int
    # per valid query, in query order: its AP and the 1-based rank of its first true match (for
    # paired comparisons and bootstrap intervals; not part of equality)
    average_precisions: np.ndarray | None = None
    first_hit_ranks: np.ndarray | None = None
    # per valid query, its share of rank-1 hits as `cmc[0]` counts them: 0 or 1 under market1501,
    # the fraction of its draws under cuhk03; their mean is cmc[0]
    rank1_hits: np.ndarray | None = None

    def __post_init__(self) -> None:
        # A frozen result should not change under its holder: keep a private, read-only copy.
        cmc = np.array(self.cmc).reshape(-1)
        cmc.flags.writeable = False
        object.__setattr__(self, "cmc", cmc)

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays element-wise and fail on their truth value.
        if not isinstance(other, RetrievalResult):
            return NotImplemented
        return (
            self.mAP == other.mAP
            and self.mINP == other.mINP
            and self.num_valid_queries == other.num_valid_queries
            and np.array_equal(self.cmc, other.cmc)
        )

    def _cmc_at(self, rank: int) -> float:
        """CMC at a 1-based rank; the last entry when the curve is shorter (a small gallery)."""
        return float(self.cmc[min(rank, len(self.cmc)) - 1])

    @property
    def rank1(self) -> float:
        return self._cmc_at(1)

    @property
    def rank5(self) -> float:
        return self._cmc_at(5)

    @property
    def rank10(self) -> float:
        return self._cmc_at(10)

    def as_dict(self) -> dict[str, float | int]:
        """Plain python numbers, ready for logs and JSON."""
        return {
            "mAP": float(self.mAP),
            "mINP": float(self.mINP),
            "rank1": self.rank1,
            "rank5": self.rank5,
            "rank10": self.rank10,
            "num_valid_queries": int(self.num_valid_queries),
        }


def evaluate(
    query_features: Any,
    gallery_features: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    *,
    metric: str = "euclidean",
    max_rank: int = 50,
    rerank: bool = False,
    protocol: str = "market1501",
    seed: int = 0,
    repeats: int = 10,
) -> RetrievalResult:
    """Rank the gallery for every query and score it: mAP, CMC up to `max_rank`, mINP.

    Follows torchreid's `evaluate_rank` (market1501 mode, not cuhk03) exactly:
    - per query, gallery items with the same pid AND the same camera are removed before ranking;
    - queries left with no match are skipped and not counted in `num_valid_queries`;
    - `metric="euclidean"` ranks by squared L2 distance, `"cosine"` by 1 - cosine similarity;
    - AP averages the precision at each hit over the number of relevant items; mINP (fast-reid)
      averages (number of relevant items) / (1-based rank of the last one).
    Ties are broken as a stable sort breaks them: at equal distance the item earlier in the
    gallery ranks first, so the result equals torchreid's with a stable argsort, ties included
    (torchreid's default quicksort orders exact ties arbitrarily). When more than half of a
    query's gallery distances tie, a `CollapsedEmbeddingWarning` says so: constant features
    would otherwise score whatever the gallery order gives. Distances that overflow float32
    raise a ValueError.

    No row is sorted: one GEMM gives the exact distances of a chunk of queries (torchreid's
    formula), and each true match's rank is counted from them (see `_score_chunk`). A top-k
    neighbour search (FAISS, as `reidgraft.index` uses for pictures and the demo) would not do:
    AP and mINP need the rank of every true match, however deep it lies, and FAISS's exact L2
    kernel alone took 1.4x a plain matmul on this 2-core CPU.

    When `max_rank` exceeds the gallery size, the CMC has the gallery's length, as in torchreid.
    A query whose list is shorter than the CMC after removal counts as matched in the ranks past
    its end (its first match came earlier); torchreid fails on, or shortens the curve for, such lists.

    `protocol="cuhk03"` is CUHK03's single-gallery-shot evaluation (torchreid's `eval_cuhk03`, meant
    for the classic split): for each query and each of `repeats` draws, the same-camera items of its
    identity are removed as above, then ONE item of every gallery identity is drawn uniformly;
    the CMC is averaged over the draws and the queries. The draws come from
    `numpy.random.default_rng(seed)`, one per (query, draw, gallery identity) in that order, so the
    same inputs give the same numbers on every call, whatever the chunking or device (torchreid
    draws from the global `np.random`). As in torchreid, mAP (and here mINP, and the per-query
    `average_precisions` and `first_hit_ranks`) are those of the full ranking, not of the draws:
    they equal the market1501 protocol's. `rank1_hits` follows the draws: each query's share of
    rank-1 hits among its draws, whose mean is `cmc[0]`.

    `rerank=True` ranks by k-reciprocal re-ranked distances (k1 = 20, k2 = 6, lambda = 0.3, as
    torchreid and fast-reid); its memory grows with (queries + gallery)^2.

    Features may be numpy arrays or torch tensors of any float dtype on any device; they are
    scored in float32, in chunks of queries so that no full query x gallery matrix is held. When
    both are CUDA tensors the distance GEMMs run on the GPU (the same numbers as on the CPU up to
    float32 rounding), and only each chunk's distances come to the CPU to be ranked.
    """
    if metric not in VALID_METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics are {', '.join(VALID_METRICS)}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    if protocol not in VALID_PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid protocols are {', '.join(VALID_PROTOCOLS)}")
    if isinstance(repeats, bool) or not isinstance(repeats, int | np.integer) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")

    on_gpu = _on_cuda(query_features) and _on_cuda(gallery_features) and not rerank
    prepare = _features_on_device if on_gpu else _features_as_numpy
    query = prepare(query_features, "query_features")
    gallery = prepare(gallery_features, "gallery_features")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query and gallery features differ in dimension: {query.shape[1]} vs {gallery.shape[1]}"
        )
    query_pids = _labels_as_numpy(query_pids, "query_pids", len(query), "query_features")
    gallery_pids = _labels_as_numpy(gallery_pids, "gallery_pids", len(gallery), "gallery_features")
    query_camids = _labels_as_numpy(query_camids, "query_camids", len(query), "query_features")
    gallery_camids = _labels_as_numpy(gallery_camids, "gallery_camids", len(gallery), "gallery_features")

    if metric == "cosine":
        query, gallery = _l2_normalised(query), _l2_normalised(gallery)
    same_identity = _SameIdentity(gallery_pids, gallery_camids)
    single_shot = _SingleGalleryShot(gallery_pids, repeats, seed) if protocol == "cuhk03" else None
    single_shot_ranks = []
    if on_gpu:  # the distance GEMMs run where the features are; ranks are counted on the CPU
        query_t, gallery_t = query, gallery
    else:
        with warnings.catch_warnings():  # read-only inputs (a FAISS index's view) are never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            query_t, gallery_t = torch.from_numpy(query), torch.from_numpy(gallery)
    gallery_norms = _squared_norms(gallery_t)

    reranked = None
    if rerank:  # k-reciprocal re-ranking needs the whole (query + gallery)^2 distance matrix
        from .rerank import k_reciprocal_rerank

        reranked = k_reciprocal_rerank(query, gallery, metric=metric)

    cmc_length = min(max_rank, len(gallery))
    # Bound the (chunk x gallery) working arrays to about 2^25 entries whatever the gallery size.
    chunk_size = max(1, min(_QUERY_CHUNK_SIZE, (1 << 25) // len(gallery)))
    average_precisions, inverse_negative_penalties, first_hit_ranks = [], [], []
    collapsed_queries = 0
    for start in range(0, len(query), chunk_size):
        chunk = slice(start, start + chunk_size)
        if reranked is not None:
            distances = torch.from_numpy(np.array(reranked[chunk], dtype=np.float32))
        else:
            distances = _distances(query_t[chunk], gallery_t, gallery_norms, metric).cpu()
        _check_finite(distances, metric)
        collapsed_queries += _count_collapsed(distances)
        entries = same_identity.entries(query_pids[chunk], query_camids[chunk])
        if single_shot is not None:  # before _score_chunk, which overwrites the distances
            single_shot_ranks.append(single_shot.first_hit_ranks(distances, query_pids[chunk], *entries))
        scores = _score_chunk(distances, *entries)
        del distances
        average_precisions.append(scores[0])
        inverse_negative_penalties.append(scores[1])
        first_hit_ranks.append(scores[2])

    if collapsed_queries:
        warnings.warn(
            CollapsedEmbeddingWarning(
                f"{collapsed_queries} of {len(query)} queries have more than half of their gallery "
                "distances tied: the embedding has collapsed (near-constant features), and those "
                "ties are ranked by gallery order alone"
            ),
            stacklevel=2,
        )
    average_precision = np.concatenate(average_precisions)
    first_hit_rank = np.concatenate(first_hit_ranks)
    num_valid = len(average_precision)
    if num_valid == 0:
        raise ValueError(
            "no valid query: no query has a cross-camera match in the gallery "
            "(each query's identity is absent from the gallery or only seen by the query's own camera)"
        )

    # cmc[k] counts the queries whose first hit is at rank <= k + 1. Kept in float32 and divided
    # in float32 as torchreid does, so the curves agree bit for bit.
    if single_shot is None:
        first_hits_in_range = first_hit_rank[first_hit_rank <= cmc_length] - 1
        hit_counts = np.cumsum(np.bincount(first_hits_in_range, minlength=cmc_length))
        cmc = hit_counts.astype(np.float32) / np.float32(num_valid)
        rank1_hits = (first_hit_rank == 1).astype(np.float64)
    else:  # every (valid query, draw) pair weighs the same, as torchreid's mean of means
        drawn_per_query = np.concatenate(single_shot_ranks).reshape(-1, repeats)
        drawn = drawn_per_query.reshape(-1)
        drawn_hits = np.cumsum(np.bincount(drawn[drawn <= cmc_length] - 1, minlength=cmc_length))
        cmc = (drawn_hits / (num_valid * repeats)).astype(np.float32)
        rank1_hits = (drawn_per_query == 1).mean(axis=1)

    return RetrievalResult(
        mAP=float(np.mean(average_precision)),
        mINP=float(np.mean(np.concatenate(inverse_negative_penalties))),
        cmc=cmc,
        num_valid_queries=num_valid,
        average_precisions=average_precision,
        first_hit_ranks=first_hit_rank,
        rank1_hits=rank1_hits,
    )


class GalleryScorer:
    """`evaluate`'s scoring against one fixed gallery, for queries that come one or a few at a
    time (the demo): the gallery's checks, norms and identity lookup are done once, and each
    query's AP is exactly the one `evaluate` gives it (same distances, same stable tie order)."""

    def __init__(
        self, gallery_features: Any, gallery_pids: Any, gallery_camids: Any, metric: str = "euclidean"
    ):
        if metric not in VALID_METRICS:
            raise ValueError(f"unknown metric {metric!r}; valid metrics are {', '.join(VALID_METRICS)}")
        gallery = _features_as_numpy(gallery_features, "gallery_features")
        self.metric = metric
        self.pids = _labels_as_numpy(gallery_pids, "gallery_pids", len(gallery), "gallery_features")
        self.camids = _labels_as_numpy(gallery_camids, "gallery_camids", len(gallery), "gallery_features")
        if metric == "cosine":
            gallery = _l2_normalised(gallery)
        with warnings.catch_warnings():  # a read-only view (a FAISS index's) is never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.gallery = torch.from_numpy(gallery)
        self.norms = _squared_norms(self.gallery)
        self.same_identity = _SameIdentity(self.pids, self.camids)

    def average_precisions(self, query_features: Any, query_pids: Any, query_camids: Any) -> np.ndarray:
        """Each query's AP under the Market-1501 protocol; NaN for a query without a match from
        another camera (which `evaluate` skips)."""
        query = _features_as_numpy(query_features, "query_features")
        if query.shape[1] != self.gallery.shape[1]:
            raise ValueError(
                f"query and gallery features differ in dimension: {query.shape[1]} vs {self.gallery.shape[1]}"
            )
        pids = _labels_as_numpy(query_pids, "query_pids", len(query), "query_features")
        camids = _labels_as_numpy(query_camids, "query_camids", len(query), "query_features")
        if self.metric == "cosine":
            query = _l2_normalised(query)
        distances = _distances(torch.from_numpy(query), self.gallery, self.norms, self.metric)
        _check_finite(distances, self.metric)
        rows, columns, is_match = self.same_identity.entries(pids, camids)
        valid = np.bincount(rows[is_match], minlength=len(query)) > 0
        scored = _score_chunk(distances, rows, columns, is_match)[0]
        result = np.full(len(query), np.nan)
        result[valid] = scored
        return result


def topk_accuracy(logits: Any, targets: Any, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of samples whose target class is among the k highest logits, for each k.

    Returns {"top1": ..., "top5": ...} (one key per k). Tied logits are ordered by class index,
    so a tie never counts as a hit for a class that comes later.
    """
    scores = _as_numpy(logits, float_dtype=np.float64)
    labels = _as_numpy(targets)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(
            f"logits must be a non-empty 2-D (num_samples, num_classes) array, got {scores.shape}"
        )
    if np.isnan(scores).any():
        raise ValueError("logits contain NaN: a NaN would rank anywhere and make the accuracy meaningless")
    num_samples, num_classes = scores.shape
    if labels.shape != (num_samples,):
        raise ValueError(f"targets must have shape ({num_samples},) to match logits, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"targets must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"targets must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]"
        )
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of integers, got {ks!r}")
    if any(not 1 <= k <= num_classes for k in ks):
        raise ValueError(f"every k must lie in [1, {num_classes}] (the number of classes), got {ks!r}")

    # The target's 0-based position in a descending sort that breaks ties by class index.
    target_scores = scores[np.arange(num_samples), labels][:, None]
    class_index = np.arange(num_classes)[None, :]
    target_position = (scores > target_scores).sum(axis=1) + (
        (scores == target_scores) & (class_index < labels[:, None])
    ).sum(axis=1)
    return {f"top{k}": float(np.mean(target_position < k)) for k in ks}


# The camera of an image whose camera is not known (data.splits.UNKNOWN_CAMERA): never the
# query's own, so a query of an unknown camera has every gallery image of its person as a match
# (the query image itself is never in the gallery: splits put each image in one place).
UNKNOWN_CAMERA = -1


def camera_label(camid: int) -> str:
    """A camera as datasets number them (the c1 of a Market-1501 name is camid 0): 'cam 1', or
    'no camera' for one that is not known."""
    return "no camera" if camid == UNKNOWN_CAMERA else f"cam {camid + 1}"


class _SameIdentity:
    """For chunks of queries, where their identity appears in the gallery (a sparse lookup,
    instead of comparing every query with every gallery item)."""

    def __init__(self, gallery_pids: np.ndarray, gallery_camids: np.ndarray):
        self.order = np.argsort(gallery_pids, kind="stable")
        self.sorted_pids = gallery_pids[self.order]
        self.gallery_camids = gallery_camids

    def entries(self, query_pids: np.ndarray, query_camids: np.ndarray):
        """(row, gallery column, is a true match) of every same-pid pair, grouped by row."""
        starts = np.searchsorted(self.sorted_pids, query_pids, side="left")
        counts = np.searchsorted(self.sorted_pids, query_pids, side="right") - starts
        rows = np.repeat(np.arange(len(query_pids)), counts)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        columns = self.order[np.repeat(starts, counts) + within]
        query_cameras = query_camids[rows]
        is_match = (self.gallery_camids[columns] != query_cameras) | (query_cameras == UNKNOWN_CAMERA)
        return rows, columns, is_match


class _SingleGalleryShot:
    """CUHK03's single-gallery-shot draws: per query and draw, one item of every gallery identity,
    and the 1-based rank of the query's drawn true match among the drawn items."""

    def __init__(self, gallery_pids: np.ndarray, repeats: int, seed: int):
        self.order = np.argsort(gallery_pids, kind="stable")
        self.identities, self.starts, self.counts = np.unique(
            gallery_pids[self.order], return_index=True, return_counts=True
        )
        self.repeats = repeats
        self.generator = np.random.default_rng(seed)

    def first_hit_ranks(
        self,
        distances: torch.Tensor,
        query_pids: np.ndarray,
        rows: np.ndarray,
        columns: np.ndarray,
        is_match: np.ndarray,
    ) -> np.ndarray:
        """(valid rows, repeats) ranks for a chunk of queries (`_SameIdentity.entries` of it).

        One uniform number per (row, draw, identity), drawn row by row so that chunking never
        changes the stream: it picks an item of that identity, or for the query's own identity
        one of its true matches (other cameras; its same-camera items are never drawn)."""
        num_rows = len(query_pids)
        match_rows, match_columns = rows[is_match], columns[is_match]
        num_matches = np.bincount(match_rows, minlength=num_rows)
        first_match = np.cumsum(num_matches) - num_matches  # where each row's matches start
        # a row with a true match has its identity in the gallery, so `own` is its index there
        own = np.minimum(np.searchsorted(self.identities, query_pids), len(self.identities) - 1)
        values = distances.numpy()
        num_identities = len(self.identities)
        block = max(1, (1 << 22) // (self.repeats * num_identities))  # bounds the working arrays
        ranks = []
        for start in range(0, num_rows, block):
            part = np.arange(start, min(start + block, num_rows))
            uniform = self.generator.random((len(part), self.repeats, num_identities))
            keep = part[num_matches[part] > 0]
            if len(keep) == 0:
                continue
            uniform = uniform[keep - start]
            picked = np.minimum((uniform * self.counts).astype(np.int64), self.counts - 1)
            drawn = self.order[self.starts + picked]  # (rows, repeats, identities) gallery columns
            own_u = np.take_along_axis(uniform, own[keep][:, None, None], axis=2)[..., 0]
            m = num_matches[keep][:, None]
            match_pick = first_match[keep][:, None] + np.minimum((own_u * m).astype(np.int64), m - 1)
            match_drawn = match_columns[match_pick]  # (rows, repeats)
            drawn_keys = _order_keys(
                torch.from_numpy(values[keep[:, None, None], drawn]), torch.from_numpy(drawn)
            )
            match_keys = _order_keys(
                torch.from_numpy(values[keep[:, None], match_drawn]), torch.from_numpy(match_drawn)
            )
            before = drawn_keys < match_keys[..., None]
            # the own identity's slot holds a draw among all its items; its true match stands in
            before.scatter_(2, torch.from_numpy(own[keep]).view(-1, 1, 1).expand(-1, self.repeats, 1), False)
            ranks.append(before.sum(dim=2).numpy() + 1)
        return np.concatenate(ranks) if ranks else np.empty((0, self.repeats), dtype=np.int64)


def _score_chunk(
    distances: torch.Tensor, rows: np.ndarray, columns: np.ndarray, is_match: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP and 1-based first-hit rank of each valid query in a chunk, without sorting rows.

    A true match's rank is what a stable sort of the row would give: the other kept items (not
    the query's identity) that come before it in (distance, gallery index) order, plus its place
    among the true matches in that order. Only items no farther than a query's last true match
    can matter, so those are picked in one comparison pass and each is placed among that query's
    sorted match keys. `distances` is overwritten.
    """
    num_rows, num_columns = distances.shape
    match_rows, match_columns = rows[is_match], columns[is_match]
    num_relevant = np.bincount(match_rows, minlength=num_rows)
    valid = num_relevant > 0
    if not valid.any():
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)

    # Each query's true-match keys, sorted, padded past every item's key (rows are grouped already).
    most = int(num_relevant.max())
    place_in_row = np.arange(len(match_rows)) - np.repeat(
        np.cumsum(num_relevant) - num_relevant, num_relevant
    )
    match_columns_t = torch.from_numpy(match_columns)
    match_keys = torch.full((num_rows, most), torch.iinfo(torch.int64).max, dtype=torch.int64)
    match_keys[match_rows, place_in_row] = _order_keys(distances[match_rows, match_columns], match_columns_t)
    match_keys = match_keys.sort(dim=1).values
    last_place = torch.from_numpy(np.maximum(num_relevant - 1, 0))[:, None]
    last = _distance_of_key(match_keys.gather(1, last_place))
    last[torch.from_numpy(~valid)] = -float("inf")

    # The query's own identity (true matches and same-camera junk) leaves the count of closer items.
    distances[rows, columns] = float("inf")
    # numpy's comparison and flatnonzero take about half the time of torch's on CPU. `<=`: an
    # item tied with the last match comes before it when its gallery index is smaller.
    candidates = distances.numpy() <= last.numpy()
    sample = candidates[::8]  # every 8th row tells dense from sparse well enough, at 1/8 the cost
    if np.count_nonzero(sample) * 8 > sample.size:
        # Poor rankings: most items are candidates, so place whole rows at once. Items past a
        # query's last match (own identity included, at +inf) fall in buckets no match counts.
        keys = _order_keys(distances, torch.arange(num_columns).expand(num_rows, -1))
        buckets = torch.searchsorted(match_keys, keys, right=True)
        bins = torch.arange(num_rows)[:, None] * (most + 1) + buckets
    else:
        flat = torch.from_numpy(np.flatnonzero(candidates))
        candidate_rows, candidate_columns = flat // num_columns, flat % num_columns
        keys = _order_keys(distances.view(-1)[flat], candidate_columns)
        buckets = torch.searchsorted(match_keys[candidate_rows], keys[:, None], right=True).squeeze(1)
        bins = candidate_rows * (most + 1) + buckets
    # bucket = number of match keys below the item's: it comes before match j iff bucket <= j.
    histogram = torch.bincount(bins.reshape(-1), minlength=num_rows * (most + 1))
    closer = torch.cumsum(histogram.view(num_rows, most + 1)[:, :most], dim=1)[torch.from_numpy(valid)]

    num_relevant = torch.from_numpy(num_relevant[valid])
    place = torch.arange(most, dtype=torch.int64)[None, :]
    rank = closer + place + 1  # 1-based rank of match j
    precision = torch.where(place < num_relevant[:, None], (place + 1) / rank.double(), 0.0)
    average_precision = precision.sum(dim=1) / num_relevant
    last_rank = rank.gather(1, (num_relevant - 1)[:, None]).squeeze(1)
    inverse_negative_penalty = num_relevant / last_rank.double()
    return average_precision.numpy(), inverse_negative_penalty.numpy(), rank[:, 0].numpy()


def _check_finite(distances: torch.Tensor, metric: str) -> None:
    values = distances.numpy()
    # min and max carry any NaN or infinity, at a tenth of the cost of torch.isfinite(...).all()
    if not (np.isfinite(values.min()) and np.isfinite(values.max())):
        cause = "the features' squared norms" if metric == "euclidean" else "the features"
        raise ValueError(
            f"{metric} distances are not finite: {cause} overflow float32; scale the features "
            "down (re-ID features are usually L2-normalised)"
        )


def _count_collapsed(distances: torch.Tensor) -> int:
    """How many rows have more than half of their values equal.

    Such a run of equal values holds the row's median, and almost surely the median of an evenly
    spaced sample of the row too; the tie is then confirmed by counting that value exactly. (An
    exact median of every row took 4x the rest of the ranking.)"""
    step = max(1, distances.shape[1] // 257)
    sample = distances[:, ::step].contiguous()
    middle = sample.kthvalue(sample.shape[1] // 2 + 1, dim=1, keepdim=True).values
    ties = np.count_nonzero(distances.numpy() == middle.numpy(), axis=1)  # 4x faster than torch's
    return int(np.count_nonzero(ties * 2 > distances.shape[1]))


def _order_keys(distances: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered as (distance, gallery index): a stable sort's order, as one number.

    A float32's bits, read as an int32 and with the magnitude bits of negatives flipped, order
    as the floats do; the gallery index fills the low 32 bits. `+ 0.0` turns -0.0 into +0.0,
    which compare equal as floats and must tie here too.
    """
    bits = (distances.float() + 0.0).view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return (ordered << 32) | columns.to(torch.int64)


def _distance_of_key(keys: torch.Tensor) -> torch.Tensor:
    """The float32 distance an `_order_keys` key was made from (padding keys give NaN)."""
    ordered = (keys >> 32).to(torch.int32)
    return torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered).view(torch.float32)


def _distances(query: torch.Tensor, gallery: torch.Tensor, gallery_norms: torch.Tensor, metric: str):
    """float32 (queries x gallery) distances from one GEMM, in torchreid's order of operations
    (so that near-equal distances round the same way): (|q|^2 + |g|^2) - 2 q.g, or 1 - q.g for
    normalised features."""
    if metric == "cosine":
        return torch.ones(len(query), len(gallery), device=query.device).addmm_(
            query, gallery.T, beta=1.0, alpha=-1.0
        )
    distances = query.pow(2).sum(dim=1, keepdim=True) + gallery_norms[None, :]
    return distances.addmm_(query, gallery.T, beta=1.0, alpha=-2.0)


def _squared_norms(features: torch.Tensor, block: int = 1 << 16) -> torch.Tensor:
    """Row-wise sums of squares, a block of rows at a time (no full-size temporary)."""
    return torch.cat([part.pow(2).sum(dim=1) for part in features.split(block)])


def _l2_normalised(features: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Rows divided by their norms (floored as torch's normalize does). A row whose norm
    overflows float32 is first divided by its largest magnitude, which leaves its direction."""
    if isinstance(features, torch.Tensor):
        norms = features.norm(dim=1, keepdim=True)
        huge = ~torch.isfinite(norms.squeeze(1))
        if bool(huge.any()):
            features = features.clone()
            features[huge] /= features[huge].abs().amax(dim=1, keepdim=True)
            norms = features.norm(dim=1, keepdim=True)
        return features / norms.clamp_min(_NORMALIZE_EPS)
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(features, axis=1, keepdims=True)
    huge = ~np.isfinite(norms[:, 0])
    if huge.any():
        features = features.copy()
        features[huge] /= np.abs(features[huge]).max(axis=1, keepdims=True)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.float32(_NORMALIZE_EPS))


def _on_cuda(features: Any) -> bool:
    return isinstance(features, torch.Tensor) and features.is_cuda


def _features_on_device(features: torch.Tensor, name: str) -> torch.Tensor:
    """float32 features left on their GPU, checked as `_features_as_numpy` checks them."""
    tensor = features.detach().float()
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items, feature_dim), got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one item is needed")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _as_numpy(array: Any, float_dtype: type | None = None) -> np.ndarray:
    """A numpy copy of an array or tensor on the CPU; floats cast to `float_dtype` when given."""
    if isinstance(array, torch.Tensor):
        array = array.detach()
        if float_dtype is not None:
            # Through torch, so bfloat16 (which numpy lacks) converts too.
            array = array.to(torch.float64 if float_dtype is np.float64 else torch.float32)
        return array.cpu().numpy()
    return np.asarray(array, dtype=float_dtype)


def _features_as_numpy(features: Any, name: str) -> np.ndarray:
    array = _as_numpy(features, float_dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_items, feature_dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one item is needed")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _labels_as_numpy(labels: Any, name: str, expected_length: int, features_name: str) -> np.ndarray:
    """int64 labels; ValueError naming `name` for anything that is not an integer exactly."""
    array = _as_numpy(labels)
    if array.ndim != 1 or len(array) != expected_length:
        raise ValueError(
            f"{name} must be 1-D with one entry per row of {features_name} ({expected_length}), "
            f"got shape {array.shape}"
        )
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if len(bad):
            raise ValueError(f"{name}[{bad[0]}] is {array[bad[0]]}: labels must be integers")
        return array.astype(np.int64)
    if array.dtype.kind == "O":
        for index, value in enumerate(array):
            if isinstance(value, bool) or not _is_integral(value):
                raise ValueError(f"{name}[{index}] is {value!r}: labels must be integers")
        return array.astype(np.int64)
    # strings (camera "c1" against camera 1 would silently never match), booleans, dates...
    kind = "strings" if array.dtype.kind in "US" else f"{array.dtype} values"
    example = array[0].item() if len(array) else ""
    raise ValueError(
        f"{name} holds {kind} such as {example!r}: labels must be integers "
        "(convert them, the same way on the query and the gallery side)"
    )


def _is_integral(value: Any) -> bool:
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, float | np.floating) and bool(np.isfinite(value)) and value == int(value)
