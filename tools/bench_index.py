"""Gallery search at scale: reidgraft's GalleryIndex kinds (flat, ivf, hnsw) on clustered synthetic
features, each against exact (flat) search on the same data in the same run.

    python tools/bench_index.py                                  # 100k and 1M images at dim 1280
    python tools/bench_index.py --sizes 100000 1000000 2000000 --dims 1280 2048

The features imitate a re-ID gallery: `size / 20` people, each seen about 20 times, every image
a unit vector at cosine ~0.8 from its person's centre (searched by cosine, as L2-normalised
features are). Queries are new images of gallery people. For each kind it prints the build
time, the memory the index took (growth of this process's resident memory), query latency
(p50 and p95 of single queries, and of batches of 64) and recall@10 against flat search.
Goal: at 1M x 1280, ivf or hnsw answers a single query at least 20x faster than
flat with recall@10 of 0.99 or more, and builds in under 10 minutes on 2 cores.

A gallery is generated in chunks from its seed (never held twice), once per kind, and each
index is freed before the next is built; a size whose index would not fit in the memory
available is skipped, and the reason printed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from reidgraft.index import GalleryIndex

IMAGES_PER_PERSON = 20
NOISE = 0.5  # |noise| / |centre|: same-person images sit at cosine ~0.8
CHUNK = 100_000
K = 10


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


class ClusteredGallery:
    """`size` unit vectors around `size / 20` centres, generated chunk by chunk from `seed`."""

    def __init__(self, size: int, dim: int, seed: int = 0):
        self.size, self.dim, self.seed = size, dim, seed
        rng = np.random.default_rng(seed)
        self.centres = self._unit(rng.standard_normal((max(1, size // IMAGES_PER_PERSON), dim), np.float32))

    @staticmethod
    def _unit(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def _images(self, people: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((len(people), self.dim), np.float32) * (NOISE / np.sqrt(self.dim))
        return self._unit(self.centres[people] + noise)

    def chunks(self):
        for start in range(0, self.size, CHUNK):
            rng = np.random.default_rng((self.seed, start))
            count = min(CHUNK, self.size - start)
            yield self._images(rng.integers(0, len(self.centres), count), rng)

    def array(self) -> np.ndarray:
        out = np.empty((self.size, self.dim), np.float32)
        for i, chunk in enumerate(self.chunks()):
            out[i * CHUNK : i * CHUNK + len(chunk)] = chunk
        return out

    def queries(self, count: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.size + 1))  # no chunk starts there
        return self._images(rng.integers(0, len(self.centres), count), rng)


def latencies(index: GalleryIndex, queries: np.ndarray, singles: int, batches: int) -> tuple[list, list]:
    single = []
    for query in queries[:singles]:
        started = time.perf_counter()
        index.search(query[None], K)
        single.append(time.perf_counter() - started)
    batched = []
    for b in range(batches):
        block = queries[(b * 64) % len(queries) :][:64]
        started = time.perf_counter()
        index.search(block, K)
        batched.append(time.perf_counter() - started)
    return single, batched


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def build(kind: str, gallery: ClusteredGallery) -> tuple[GalleryIndex, float, int]:
    gc.collect()
    before = resident_bytes()
    started = time.perf_counter()
    if kind == "flat":  # exact search needs no training: fill it chunk by chunk
        index = GalleryIndex(next(gallery.chunks())[:1], "cosine")
        index.index.reset()
        for chunk in gallery.chunks():
            index.index.add(chunk)
    else:
        features = gallery.array()
        index = GalleryIndex(features, "cosine", kind=kind)
        del features
    seconds = time.perf_counter() - started
    gc.collect()
    return index, seconds, resident_bytes() - before


def bench(size: int, dim: int, kinds: list[str], query_count: int) -> None:
    need = size * dim * 4 * 3.2  # the generated array, its normalised copy and the index
    if need > available_bytes():
        print(
            f"\n{size:,} x {dim}: skipped, an index needs about {need / 2**30:.1f} GiB, "
            f"{available_bytes() / 2**30:.1f} GiB available"
        )
        return
    gallery = ClusteredGallery(size, dim)
    queries = gallery.queries(query_count)
    print(f"\n{size:,} images x {dim} (cosine), {query_count} queries, {faiss.omp_get_max_threads()} threads")
    header = (
        f"{'kind':<6}{'build s':>9}{'memory GiB':>12}{'1 query p50 ms':>16}{'p95':>9}"
        f"{'64 queries p50 ms':>19}{'p95':>10}{'recall@10':>11}{'1-query speed-up':>18}"
    )
    print(header)
    truth, flat_p50 = None, None
    for kind in ["flat", *[k for k in kinds if k != "flat"]]:
        index, seconds, memory = build(kind, gallery)
        singles = 20 if kind == "flat" and size >= 500_000 else 100
        single, batched = latencies(index, queries, singles, batches=5 if kind == "flat" else 20)
        _, found = index.search(queries, K)
        if truth is None:
            truth = found
        recall = statistics.fmean(len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True))
        p50 = percentile(single, 50)
        flat_p50 = flat_p50 or p50
        if kind in kinds:
            print(
                f"{index.kind:<6}{seconds:>9.1f}{memory / 2**30:>12.2f}"
                f"{p50:>16.2f}{percentile(single, 95):>9.2f}"
                f"{percentile(batched, 50):>19.1f}{percentile(batched, 95):>10.1f}{recall:>11.4f}"
                f"{flat_p50 / p50:>17.1f}x" + (f"  ({index.params})" if index.kind != "flat" else "")
            )
        del index
        gc.collect()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1280])
    parser.add_argument(
        "--kinds", nargs="+", default=["flat", "ivf", "hnsw"], choices=["flat", "ivf", "hnsw"]
    )
    parser.add_argument("--queries", type=int, default=500, help="queries for recall (default: 500)")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1000 or min(args.dims) < 2 or args.queries < 64:
        parser.error("--sizes must be at least 1000, --dims at least 2, --queries at least 64")
    for dim in args.dims:
        for size in args.sizes:
            bench(size, dim, args.kinds, args.queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
