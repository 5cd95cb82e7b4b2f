"""A gallery's features in a FAISS index: nearest gallery items for query features, and a cache
file holding the index with the gallery's image list, keyed by the model, the images and the
index's kind and parameters.

Kinds: `flat` is exact (IndexFlatL2 / IndexFlatIP); `ivf` (IndexIVFFlat: k-means cells, a query
scans the `nprobe` nearest) and `hnsw` (IndexHNSWFlat: a navigable small-world graph) answer
large galleries far faster at a small loss of recall (`tools/bench_index.py` measures both);
`auto` is flat below 100,000 images and ivf from there. `euclidean` ranks by squared L2, as the
evaluator does; `cosine` by inner product of L2-normalised features, reported as 1 - similarity.
These indexes only pick the pictures to show: mAP is always computed exactly, elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .files import read_keyed_arrays, write_keyed_arrays

METRICS = ("euclidean", "cosine")
KINDS = ("flat", "ivf", "hnsw", "auto")
AUTO_IVF_FROM = 100_000  # `auto`: exact search below this many images, ivf from here
IVF_POINTS_PER_CELL = 39  # FAISS's minimum training points per k-means cell
IVF_TRAINING_PER_CELL = 39  # k-means sample per cell: enough for search cells, and 2 cores train
IVF_KMEANS_ITERATIONS = 10  # 1M x 1280 in minutes (FAISS defaults to 25)
HNSW_M = 32  # graph neighbours per node
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128

# Bumped whenever what a cache file holds, or how its key is made, changes.
CACHE_FORMAT = 4  # 4: keys are SHA-256 fingerprints (files.Fingerprint)


def _prepared(features, metric: str) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"features must be a non-empty 2-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("features contain NaN or infinite values")
    if metric == "cosine":
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), np.float32(1e-12))
    return array


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")


def index_key(kind: str) -> str:
    """What an index of `kind` is built with, for cache keys: its kind and every constant that
    shapes it (the gallery's size fixes the rest)."""
    constants = {
        "ivf_rules": IVF_RULES, "auto_ivf_from": AUTO_IVF_FROM, "ivf_points_per_cell": IVF_POINTS_PER_CELL,
        "ivf_training_per_cell": IVF_TRAINING_PER_CELL,
        "ivf_kmeans_iterations": IVF_KMEANS_ITERATIONS,
        "hnsw": [HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH],
    }  # fmt: skip
    return json.dumps({"kind": kind, **({} if kind == "flat" else constants)}, sort_keys=True)


def faiss_gpus() -> int:
    """GPUs FAISS can search on: 0 with faiss-cpu (the default install), which has no GPU code."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


# The rules of `ivf_cells` and `default_nprobe`, in words: part of every cache key, so a cache
# built under other rules is rebuilt. Change this text when a rule changes.
IVF_RULES = "cells: the power of two nearest 4 sqrt(n), 16 to 65536; nprobe: cells / 32, at least 8"


def ivf_cells(count: int) -> int:
    """k-means cells for an IVF index of `count` vectors: the power of two nearest 4 sqrt(count)."""
    return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(count))))))


def default_nprobe(cells: int) -> int:
    """Cells a query scans: 1/32 of them (at least 8), which kept recall@10 at 0.99 or more on
    clustered features in tools/bench_index.py."""
    return max(8, cells // 32)


def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2


def _flat(dim: int, metric: str) -> faiss.Index:
    return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)


class GalleryIndex:
    """Nearest-neighbour search over gallery features with one of KINDS.

    `note` says when the kind asked for could not be used (an ivf index needs at least 39 images
    per cell; a smaller gallery is searched exactly). The index stays in host memory (what
    `features`, `to_bytes` and the cache read); with faiss-gpu installed (`pip install .[gpu]`)
    and a GPU present, flat and ivf searches run on a copy on GPU 0 (FAISS has no GPU HNSW).
    `gpu=False` keeps them on the CPU; `gpu=True` insists on the GPU."""

    def __init__(
        self,
        features,
        metric: str = "euclidean",
        *,
        kind: str = "flat",
        gpu: bool | None = None,
        nprobe: int | None = None,
        ef_search: int = HNSW_EF_SEARCH,
        seed: int = 0,
    ):
        _check_metric(metric)
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of: {', '.join(KINDS)}")
        gallery = _prepared(features, metric)
        count, dim = gallery.shape
        self.metric, self.note, self.asked = metric, "", kind
        if kind == "auto":
            kind = "ivf" if count >= AUTO_IVF_FROM else "flat"
        if kind == "ivf":
            cells = ivf_cells(count)
            if count < IVF_POINTS_PER_CELL * cells:
                self.note = (
                    f"an ivf index of {cells} cells needs at least {IVF_POINTS_PER_CELL * cells} images, "
                    f"the gallery has {count}: searching it exactly (flat) instead"
                )
                kind = "flat"
        if kind == "flat":
            self.index = _flat(dim, metric)
        elif kind == "ivf":
            self.index = faiss.IndexIVFFlat(_flat(dim, metric), dim, cells, _faiss_metric(metric))
            self.index.cp.seed, self.index.cp.niter = seed, IVF_KMEANS_ITERATIONS
            sample = min(count, IVF_TRAINING_PER_CELL * cells)
            chosen = np.sort(np.random.default_rng(seed).choice(count, sample, replace=False))
            self.index.train(gallery[chosen])
            self.index.nprobe = nprobe or default_nprobe(cells)
        else:
            self.index = faiss.IndexHNSWFlat(dim, HNSW_M, _faiss_metric(metric))
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            self.index.hnsw.efSearch = ef_search
        self.index.add(gallery)
        self._use_gpu(gpu)

    @property
    def kind(self) -> str:
        """The kind of the index held: flat, ivf or hnsw."""
        if isinstance(self.index, faiss.IndexIVF):
            return "ivf"
        return "hnsw" if isinstance(self.index, faiss.IndexHNSW) else "flat"

    @property
    def params(self) -> dict[str, Any]:
        """What the search depends on beyond the vectors (part of the cache key)."""
        if self.kind == "ivf":
            return {"kind": "ivf", "cells": int(self.index.nlist), "nprobe": int(self.index.nprobe)}
        if self.kind == "hnsw":
            hnsw = self.index.hnsw
            return {"kind": "hnsw", "M": HNSW_M, "efConstruction": int(hnsw.efConstruction),
                    "efSearch": int(hnsw.efSearch)}  # fmt: skip
        return {"kind": "flat"}

    def _use_gpu(self, gpu: bool | None) -> None:
        if gpu and not faiss_gpus():
            raise ValueError(
                "a GPU gallery index needs faiss-gpu and a visible GPU; install reidgraft[gpu] "
                "(see docs/performance.md) or search on the CPU"
            )
        if gpu and self.kind == "hnsw":
            raise ValueError("FAISS has no GPU HNSW index; use kind ivf or flat on the GPU, or gpu=False")
        self.searcher = self.index
        if (gpu or (gpu is None and faiss_gpus())) and self.kind != "hnsw":
            self._gpu_resources = faiss.StandardGpuResources()
            self.searcher = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)

    @property
    def on_gpu(self) -> bool:
        return self.searcher is not self.index

    @classmethod
    def _wrap(cls, index: faiss.Index, metric: str, gpu: bool | None = None) -> GalleryIndex:
        self = cls.__new__(cls)
        self.index, self.metric, self.note = index, metric, ""
        self.asked = self.kind
        self._use_gpu(gpu)
        return self

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def features(self) -> np.ndarray:
        """The indexed vectors in gallery order (L2-normalised for cosine), read-only. For flat and
        hnsw a view of the index's own memory (valid while this index lives); ivf keeps them by
        cell, so they are gathered once into a copy."""
        if self.kind == "ivf":
            if getattr(self, "_gathered", None) is None:
                self.index.make_direct_map()
                self._gathered = self.index.reconstruct_n(0, len(self))
                self._gathered.flags.writeable = False
            return self._gathered
        storage = faiss.downcast_index(self.index.storage) if self.kind == "hnsw" else self.index
        vectors = faiss.rev_swig_ptr(storage.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        vectors.flags.writeable = False
        return vectors

    def search(self, query_features, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and gallery indices of the k nearest items per query, nearest first (with
        ivf and hnsw, approximately: an index of -1 marks a slot left empty)."""
        queries = _prepared(query_features, self.metric)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query features have dimension {queries.shape[1]}, the gallery {self.dim}")
        scores, indices = self.searcher.search(queries, min(k, len(self)))
        return (1.0 - scores if self.metric == "cosine" else scores), indices

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self.index)

    @classmethod
    def from_bytes(
        cls, data: np.ndarray, metric: str, params: Mapping[str, Any] | None = None
    ) -> GalleryIndex:
        _check_metric(metric)
        owner = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        index = faiss.downcast_index(owner)  # another view of the object `owner` frees
        if index.metric_type != _faiss_metric(metric):
            raise ValueError(f"the stored index does not use the {metric} metric")
        self = cls._wrap(index, metric)
        self._owner = owner
        if params and params.get("kind") != self.kind:
            raise ValueError(f"the stored index is {self.kind}, not {params.get('kind')}")
        if self.kind == "ivf" and params:
            index.nprobe = int(params["nprobe"])
        if self.kind == "hnsw" and params:
            index.hnsw.efSearch = int(params["efSearch"])
        return self


def save_gallery_cache(path: str | Path, index: GalleryIndex, names: Sequence[str], key: str) -> None:
    """Write the index and the gallery's image names to `path` (temporary file, then rename)."""
    if len(names) != len(index):
        raise ValueError(f"{len(names)} image names for an index of {len(index)} items")
    arrays = {
        "metric": np.array(index.metric),
        "params": np.array(json.dumps(index.params)),
        "names": np.array(list(names), dtype=str),
        "index": index.to_bytes(),
    }
    write_keyed_arrays(Path(path), f"gallery {CACHE_FORMAT}\0{key}", arrays)


def load_gallery_cache(path: str | Path, key: str) -> tuple[GalleryIndex, list[str]] | None:
    """The index and image names stored at `path`, or None when there is no usable cache there:
    missing, written for another key or format, or damaged (it is then simply rebuilt)."""
    stored = read_keyed_arrays(Path(path), f"gallery {CACHE_FORMAT}\0{key}")
    if stored is None:
        return None
    try:
        params = json.loads(str(stored["params"]))
        index = GalleryIndex.from_bytes(stored["index"], str(stored["metric"]), params)
        names = [str(name) for name in stored["names"]]
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError):
        return None
    return (index, names) if len(names) == len(index) else None
