"""A gallery's features in an exact FAISS index: nearest gallery items for query features.

`euclidean` uses IndexFlatL2 (squared L2, as the evaluator), `cosine` IndexFlatIP over
L2-normalised features (distance reported as 1 - similarity). Used by `tools/evaluate.py` for
ranked-result pictures and by the demo to answer queries.
"""

from __future__ import annotations

import faiss
import numpy as np

METRICS = ("euclidean", "cosine")


def _prepared(features, metric: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"features must be a non-empty 2-D array, got shape {array.shape}")
    if metric == "cosine":
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), np.float32(1e-12))
    return array


class GalleryIndex:
    """Exact nearest-neighbour search over gallery features."""

    def __init__(self, features, metric: str = "euclidean"):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
        gallery = _prepared(features, metric)
        self.metric = metric
        self.index = (
            faiss.IndexFlatIP(gallery.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(gallery.shape[1])
        )
        self.index.add(gallery)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, query_features, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and gallery indices of the k nearest items per query, nearest first."""
        queries = _prepared(query_features, self.metric)
        if queries.shape[1] != self.index.d:
            raise ValueError(f"query features have dimension {queries.shape[1]}, the gallery {self.index.d}")
        scores, indices = self.index.search(queries, min(k, len(self)))
        return (1.0 - scores if self.metric == "cosine" else scores), indices
