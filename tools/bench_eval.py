"""Time reidgraft's evaluator on Market-1501-sized features against torchreid's (distance matrix
+ Python `evaluate_rank`) and against a bare float32 matmul of the same sizes (the floor no exact
method can beat on CPU), all in one run; then evaluate a Market-1501 + 500k distractor gallery
in a child process and report its time and peak memory.

    python tools/bench_eval.py [--dims 2048 1280] [--distractors 500000] [--skip-torchreid]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from reidgraft.evaluation import evaluate

NUM_QUERY, NUM_GALLERY, NUM_DISTRACTORS, NUM_IDS, NUM_CAMERAS = 3368, 15913, 2800, 750, 6
# Per-dimension spread of identity centres and camera offsets against unit noise: in thousands of
# dimensions a small identity signal already separates people, so these keep mAP realistic.
IDENTITY_SCALE, CAMERA_SCALE = float(os.environ.get("BENCH_ID_SCALE", 0.5)), 0.05


def market_like(dim: int, seed: int = 0, extra_distractors: int = 0):
    """Features shaped like Market-1501's test set: same-id features share a centre, cameras add
    an offset, pid 0 distractors are unrelated; `extra_distractors` more pid-0 gallery items."""
    rng = np.random.default_rng(seed)
    centres = IDENTITY_SCALE * rng.standard_normal((NUM_IDS + 1, dim), dtype=np.float32)
    cameras = CAMERA_SCALE * rng.standard_normal((NUM_CAMERAS, dim), dtype=np.float32)
    query_pids = rng.integers(1, NUM_IDS + 1, NUM_QUERY)
    query_cams = rng.integers(0, NUM_CAMERAS, NUM_QUERY)
    num_people = NUM_GALLERY - NUM_DISTRACTORS
    gallery_pids = np.concatenate([rng.integers(1, NUM_IDS + 1, num_people), np.zeros(NUM_DISTRACTORS, int)])
    gallery_cams = rng.integers(0, NUM_CAMERAS, NUM_GALLERY)

    def features(pids, cams):
        out = centres[pids] + cameras[cams] + rng.standard_normal((len(pids), dim), dtype=np.float32)
        out[pids == 0] = rng.standard_normal((int((pids == 0).sum()), dim), dtype=np.float32)
        return out

    query = features(query_pids, query_cams)
    # One allocation for the whole gallery: concatenating would briefly hold it twice.
    gallery = np.empty((NUM_GALLERY + extra_distractors, dim), np.float32)
    gallery[:NUM_GALLERY] = features(gallery_pids, gallery_cams)
    for start in range(NUM_GALLERY, len(gallery), 50_000):  # in blocks: no float64 temporaries
        stop = min(start + 50_000, len(gallery))
        gallery[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    if extra_distractors:
        gallery_pids = np.concatenate([gallery_pids, np.zeros(extra_distractors, int)])
        gallery_cams = np.concatenate([gallery_cams, rng.integers(0, NUM_CAMERAS, extra_distractors)])
    return query, gallery, query_pids, gallery_pids, query_cams, gallery_cams


def seconds(run, repeats: int = 1) -> tuple[float, object]:
    """Median wall time of `repeats` calls, and the last call's result."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def torchreid_evaluate(query, gallery, query_pids, gallery_pids, query_cams, gallery_cams):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics.distance import compute_distance_matrix
        from torchreid.reid.metrics.rank import evaluate_rank
    distances = compute_distance_matrix(
        torch.from_numpy(query), torch.from_numpy(gallery), "euclidean"
    ).numpy()
    cmc, mean_ap = evaluate_rank(
        distances, query_pids, gallery_pids, query_cams, gallery_cams, 50, use_cython=False
    )
    return mean_ap, cmc, distances


def match_ties(distances, query_pids, gallery_pids, query_cams, gallery_cams) -> int:
    """Queries where a true match and another kept item are exactly as far (float32): there the
    order of equals decides, and torchreid's unstable sort and reidgraft's rule may differ."""
    count = 0
    for row, pid, cam in zip(distances, query_pids, query_cams, strict=True):
        same_pid = gallery_pids == pid
        matches = same_pid & (gallery_cams != cam)
        count += bool(np.isin(row[matches], row[~same_pid]).any())
    return count


def bench_dim(dim: int, skip_torchreid: bool) -> str:
    """One line: the matmul floor, reidgraft's evaluate and torchreid's, at one feature size."""
    data = market_like(dim)
    query, gallery = data[0], data[1]
    floor, _ = seconds(lambda: query @ gallery.T, repeats=3)
    ours, result = seconds(lambda: evaluate(*data), repeats=3)
    line = (
        f"dim {dim} (medians of 3): matmul floor {floor:.2f} s | reidgraft {ours:.2f} s "
        f"({ours / floor:.2f}x floor, goal <= 1.5x; mAP {result.mAP:.4f})"
    )
    if not skip_torchreid:
        theirs, (their_map, their_cmc, distances) = seconds(lambda: torchreid_evaluate(*data))
        ties = match_ties(distances, *data[2:])
        line += (
            f" | torchreid {theirs:.1f} s ({theirs / ours:.0f}x slower; mAP differs by "
            f"{abs(their_map - result.mAP):.1e}, CMC by {np.abs(their_cmc[:50] - result.cmc).max():.1e}; "
            f"{ties} queries have a match tied with another item)"
        )
    return line


def big_gallery_child(dim: int, distractors: int) -> None:
    """Run in a child process so that its peak memory is its own."""
    data = market_like(dim, seed=1, extra_distractors=distractors)
    elapsed, result = seconds(lambda: evaluate(*data))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": elapsed, "peak_gib": peak_gib, "gallery": len(data[1]), "mAP": result.mAP}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 1280])
    parser.add_argument("--distractors", type=int, default=500_000, help="0 skips the big gallery")
    parser.add_argument("--big-dim", type=int, default=2048)
    parser.add_argument("--skip-torchreid", action="store_true", help="its Python ranking takes ~1 min")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        big_gallery_child(args.big_dim, args.distractors)
        return 0

    threads = torch.get_num_threads()
    print(f"Market-1501 sizes: {NUM_QUERY} queries x {NUM_GALLERY} gallery, CPU, {threads} threads")
    for dim in args.dims:
        print(bench_dim(dim, args.skip_torchreid))

    if args.distractors:
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--distractors", str(args.distractors)]
            + ["--big-dim", str(args.big_dim)],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            print(f"big gallery: failed: {child.stderr.strip().splitlines()[-1]}")
            return 1
        big = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"Market-1501 + {args.distractors} distractors (gallery {big['gallery']}, dim {args.big_dim}): "
            f"{big['seconds']:.1f} s, peak memory {big['peak_gib']:.2f} GiB (goal < 8 GiB, features included)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
