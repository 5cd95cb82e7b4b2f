"""The gallery's FAISS index for one model, cached in the run folder (or a folder of the user's
choosing, `--cache-dir`: one folder serves many runs, since every file is keyed by the model's
weights) and built resumably: the features are extracted once per (model, gallery content) and
saved with the index, so the next start only reads it back; an interrupted extraction restarts
where it stopped. A cache that is there is only read: a read-only run folder serves from it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine.features import extract_features
from ..files import (
    check_writable,
    files_fingerprint,
    fingerprint,
    read_keyed_arrays,
    write_keyed_arrays,
    writer_alive,
)
from ..index import KINDS, GalleryIndex, index_key, load_gallery_cache, save_gallery_cache
from ..progress import Progress
from .gallery import DemoError, Gallery
from .model import RunModel

CACHE_FOLDER = "gallery_cache"
SAVE_EVERY_SECONDS = 30.0  # an interrupted indexing loses at most about this much work


def cache_folder(run_model: RunModel, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir) if cache_dir is not None else run_model.run_dir / CACHE_FOLDER


def check_cache_folder(folder: Path, chosen: bool) -> None:
    """DemoError (one line) unless the cache can be written in `folder`, before any extraction;
    temporary files of writers that are gone (a kill -9 while saving) are removed first."""
    try:
        if chosen:
            check_writable(folder, "--cache-dir")
        else:
            check_writable(folder, "the gallery cache", "pass --cache-dir DIR to keep it in another folder")
    except ValueError as error:
        raise DemoError(str(error)) from None
    for leftover in folder.glob(".*.tmp") if folder.is_dir() else ():
        if not writer_alive(leftover):
            leftover.unlink(missing_ok=True)


def gallery_index(
    run_model: RunModel,
    gallery: Gallery,
    *,
    batch_size: int = 64,
    workers: int = 0,
    kind: str = "auto",
    cache_dir: str | Path | None = None,
) -> tuple[GalleryIndex, bool]:
    """The gallery's FAISS index of `kind` for this model, read from the cache (the run's, or
    `cache_dir`) when the model, every image and the index kind are unchanged, else extracted
    (progress bar) and cached. Returns (index, was cached)."""
    if kind not in KINDS:
        raise DemoError(f"unknown index kind {kind!r}; choose one of: {', '.join(KINDS)}")
    files = files_fingerprint(gallery.paths, gallery.root)
    features_key = fingerprint(f"{run_model.fingerprint}\0{files}")
    key = fingerprint(f"{features_key}\0{index_key(kind)}")
    folder = cache_folder(run_model, cache_dir)
    cache = folder / f"model{run_model.k}-{key[:16]}.npz"
    cached = load_gallery_cache(cache, key)
    if cached is not None:
        return cached[0], True
    check_cache_folder(folder, chosen=cache_dir is not None)
    # the features do not depend on the index kind: an extraction stopped under one kind
    # resumes under another
    partial = folder / f"model{run_model.k}-{features_key[:16]}.partial.npz"
    features = extract_resumably(run_model, gallery, partial, features_key, batch_size, workers)
    index = GalleryIndex(features, run_model.metric, kind=kind)
    save_gallery_cache(cache, index, [gallery.name_of(i) for i in range(len(gallery))], key)
    partial.unlink(missing_ok=True)
    return index, False


def extract_resumably(
    run_model: RunModel, gallery: Gallery, partial: Path, key: str, batch_size: int, workers: int
) -> np.ndarray:
    """The gallery's features, as evaluation extracts them (precision and memory format
    included), in chunks of batches with one progress bar; the rows done so far are saved to
    `partial` every SAVE_EVERY_SECONDS, so an interrupted extraction (Ctrl-C, a crash) restarts
    where it stopped. A partial file of another key is ignored."""
    done = _read_partial(partial, key)
    total = len(gallery.paths)
    chunk = batch_size * 8
    partial.parent.mkdir(parents=True, exist_ok=True)
    saved_at = time.monotonic()
    with Progress(total, f"indexing {total} gallery images", unit="images", initial=len(done)) as bar:
        parts = [done] if len(done) else []
        position = len(done)
        while position < total:
            items = [(path, 0, 0) for path in gallery.paths[position : position + chunk]]
            (features,) = extract_features(
                [run_model.model], items, height=run_model.height, width=run_model.width,
                batch_size=batch_size, workers=workers, amp=run_model.amp,
                channels_last=run_model.channels_last, what="", mean=run_model.extractor.mean,
                std=run_model.extractor.std,
            )  # fmt: skip
            parts.append(features.cpu().numpy())
            position += len(items)
            bar.update(len(items))
            if position < total and time.monotonic() - saved_at >= SAVE_EVERY_SECONDS:
                _write_partial(partial, key, np.concatenate(parts))
                saved_at = time.monotonic()
    return np.concatenate(parts)


def _read_partial(path: Path, key: str) -> np.ndarray:
    stored = read_keyed_arrays(path, key)
    if stored is None or "features" not in stored:
        return np.zeros((0, 0), np.float32)
    return np.asarray(stored["features"], dtype=np.float32)


def _write_partial(path: Path, key: str, features: np.ndarray) -> None:
    write_keyed_arrays(path, key, {"features": features})
