"""A gallery's features in an exact FAISS index: nearest gallery items for query features, and a
cache file holding the index with the gallery's image list, keyed by the model and the images.

`euclidean` uses IndexFlatL2 (squared L2, as the evaluator), `cosine` IndexFlatIP over
L2-normalised features (distance reported as 1 - similarity). Used by `tools/evaluate.py` for
ranked-result pictures and by the demo to answer queries.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np
import torch

from .files import atomic_write

METRICS = ("euclidean", "cosine")

# Bumped whenever what a cache file holds, or how its key is made, changes.
CACHE_FORMAT = 1


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


def faiss_gpus() -> int:
    """GPUs FAISS can search on: 0 with faiss-cpu (the default install), which has no GPU code."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


class GalleryIndex:
    """Exact nearest-neighbour search over gallery features.

    The index itself stays in host memory (it is what `features`, `to_bytes` and the cache read);
    with faiss-gpu installed (`pip install .[gpu]`) and a GPU present, searches run on a copy of it
    on GPU 0. `gpu=False` keeps them on the CPU; `gpu=True` insists on the GPU."""

    def __init__(self, features, metric: str = "euclidean", *, gpu: bool | None = None):
        _check_metric(metric)
        gallery = _prepared(features, metric)
        self.metric = metric
        self.index = (
            faiss.IndexFlatIP(gallery.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(gallery.shape[1])
        )
        self.index.add(gallery)
        self._use_gpu(gpu)

    def _use_gpu(self, gpu: bool | None) -> None:
        if gpu and not faiss_gpus():
            raise ValueError(
                "a GPU gallery index needs faiss-gpu and a visible GPU; install reidgraft[gpu] "
                "(see README) or search on the CPU"
            )
        self.searcher = self.index
        if gpu or (gpu is None and faiss_gpus()):
            self._gpu_resources = faiss.StandardGpuResources()
            self.searcher = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)

    @property
    def on_gpu(self) -> bool:
        return self.searcher is not self.index

    @classmethod
    def _wrap(cls, index: faiss.Index, metric: str, gpu: bool | None = None) -> GalleryIndex:
        self = cls.__new__(cls)
        self.index, self.metric = index, metric
        self._use_gpu(gpu)
        return self

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def features(self) -> np.ndarray:
        """The indexed vectors (L2-normalised for cosine): a read-only view of the index's own
        memory, no copy (valid while this index lives)."""
        vectors = faiss.rev_swig_ptr(self.index.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)
        vectors.flags.writeable = False
        return vectors

    def search(self, query_features, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and gallery indices of the k nearest items per query, nearest first."""
        queries = _prepared(query_features, self.metric)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query features have dimension {queries.shape[1]}, the gallery {self.dim}")
        scores, indices = self.searcher.search(queries, min(k, len(self)))
        return (1.0 - scores if self.metric == "cosine" else scores), indices

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self.index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, metric: str) -> GalleryIndex:
        _check_metric(metric)
        index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        expected = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        if index.metric_type != expected:
            raise ValueError(f"the stored index does not use the {metric} metric")
        return cls._wrap(index, metric)


def files_fingerprint(paths: Sequence[str | Path], root: str | Path) -> str:
    """A hash of the images' names (relative to `root`) and bytes, in order: the same gallery moved
    elsewhere keeps its fingerprint, one changed, added, removed or renamed image changes it."""
    digest = hashlib.blake2b(digest_size=20)
    root = Path(root)
    for path in paths:
        path = Path(path)
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def state_fingerprint(state: Mapping[str, object], extra: Iterable[object] = ()) -> str:
    """A hash of a model's state (every tensor's name, dtype, shape and bytes) and of `extra`
    (architecture, input size, metric...), so features from another model never count as cached."""
    digest = hashlib.blake2b(digest_size=20)
    for value in extra:
        digest.update(f"{value!r}\0".encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # A byte view of any dtype (bfloat16 included, which numpy lacks).
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_gallery_cache(path: str | Path, index: GalleryIndex, names: Sequence[str], key: str) -> None:
    """Write the index and the gallery's image names to `path` (temporary file, then rename)."""

    if len(names) != len(index):
        raise ValueError(f"{len(names)} image names for an index of {len(index)} items")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array(CACHE_FORMAT),
        key=np.array(key),
        metric=np.array(index.metric),
        names=np.array(list(names), dtype=str),
        index=index.to_bytes(),
    )
    atomic_write(Path(path), lambda file: file.write(buffer.getbuffer()))


def load_gallery_cache(path: str | Path, key: str) -> tuple[GalleryIndex, list[str]] | None:
    """The index and image names stored at `path`, or None when there is no usable cache there:
    missing, written for another key or format, or damaged (it is then simply rebuilt)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["format"]) != CACHE_FORMAT or str(stored["key"]) != key:
                return None
            index = GalleryIndex.from_bytes(stored["index"], str(stored["metric"]))
            names = [str(name) for name in stored["names"]]
    except (OSError, KeyError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile):
        return None
    return (index, names) if len(names) == len(index) else None
