"""Time the gallery-search demo on a Market-sized gallery: start-up with a cached index, and the
server-side latency of one query, against the floors measured in the same run.

    python tools/bench_demo.py [--gallery-ids 1500] [--arch mobilenetv2_x1_0] [--height 128 --width 64]
                               [--queries 30] [--top-k 10] [--checkpoint RUN_DIR] [--workdir DIR]

It writes a synthetic dataset whose gallery has about 20k distinct images (once, under
--workdir), indexes it with the model (the first start), then measures:
- start-up with the cached index: `app.prepare()` in this process (imports already done), and a
  whole `python app.py` process until its page answers (imports included);
- the latency of one query as the server computes it (`answer_query`: read, embed, FAISS search,
  framed thumbnails, captions, AP; then Gradio's encoding of the result gallery), over distinct
  dataset queries;
- peers: the model's forward pass on one image (no search can answer faster), FAISS's search
  alone, and a numpy brute-force search over the same features;
- the round trip through gradio_client (HTTP, upload and encoding included).
Goals: start-up under 5 s, a query under 200 ms, on a 2-core CPU.
Without --checkpoint the model is freshly initialised: an untrained model costs the same.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from reidgraft.cli import demo as demo_app
from reidgraft.config import build_config
from reidgraft.data.synthetic import write_synthetic_market
from reidgraft.demo import answer_query, build_app, launch, read_query
from reidgraft.engine.checkpoint import save_checkpoint
from reidgraft.models import build_backbone

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery-ids", type=int, default=1500, help="identities in the test split")
    parser.add_argument("--distractors", type=int, default=4400)
    parser.add_argument("--arch", default="mobilenetv2_x1_0")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--checkpoint", help="a trained run to use instead of a fresh model")
    parser.add_argument("--workdir", help="where the dataset, model and cache live (default: a temp dir)")
    return parser.parse_args(argv)


def fresh_run(workdir: Path, data_root: Path, args) -> Path:
    """A run folder holding one freshly initialised model, as tools/train.py would lay it out."""
    run_dir = workdir / f"run-{args.arch}-{args.height}x{args.width}"
    if not (run_dir / "checkpoint.pt").is_file():
        config = build_config(
            dataset="synthetic", root=str(data_root), arch=args.arch, models=1, height=args.height,
            width=args.width, device="cpu",
        )  # fmt: skip
        model = build_backbone(args.arch, 1, seed=0)
        payload = {"format": 1, "config": config.to_dict(), "num_classes": 1, "epoch": 0}
        save_checkpoint(run_dir / "checkpoint.pt", {**payload, "models": [model.state_dict()]})
    return run_dir


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_start_up(app_args: list[str]) -> float:
    """Seconds from launching `python app.py` until its page answers over HTTP."""
    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), *app_args, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.perf_counter() - started < 300:
            if server.poll() is not None:
                raise RuntimeError(f"app.py exited with code {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("app.py did not answer within 300 s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="reidgraft-bench-demo-"))
    data_root = workdir / "data"
    started = time.perf_counter()
    write_synthetic_market(
        data_root / "synthetic", train_ids=1, test_ids=args.gallery_ids, images_per_id=14,
        distractors=args.distractors,
    )  # fmt: skip
    print(f"dataset ready in {time.perf_counter() - started:.0f} s under {data_root}")
    run_dir = Path(args.checkpoint) if args.checkpoint else fresh_run(workdir, data_root, args)
    app_args = ["--checkpoint", str(run_dir), "--model", "0", "--gallery", "synthetic"]
    if args.checkpoint:  # a trained run's data root is its own; point the gallery at ours
        app_args[-1] = str(next((data_root / "synthetic").glob("market1501/*/bounding_box_test")))
    threads = torch.get_num_threads()

    already_cached = any((run_dir / "gallery_cache").glob("*.npz"))
    started = time.perf_counter()
    searchers, _ = demo_app.prepare(demo_app.parse_args(app_args))
    first_start = time.perf_counter() - started
    cached_starts = timed(lambda: demo_app.prepare(demo_app.parse_args(app_args)), 3)
    searcher = searchers[0]
    gallery_size, dim = len(searcher.gallery), searcher.index.dim
    print(
        f"gallery {gallery_size} images, {args.arch} at {args.height}x{args.width} (dim {dim}), CPU, "
        f"{threads} threads"
    )
    how = (
        "the index was cached by an earlier run" if already_cached else "extracting and indexing the gallery"
    )
    print(f"first start: {first_start:.1f} s ({how})")
    print(f"start-up with the cached index, in process: median {statistics.median(cached_starts):.2f} s "
          "(goal < 5 s)")  # fmt: skip
    process = process_start_up(app_args)
    print(f"start-up of a whole `python app.py` until its page answers (imports included): {process:.1f} s")

    dataset_queries = sorted((data_root / "synthetic").glob("market1501/*/query/*.jpg"))
    queries = dataset_queries[:: max(1, len(dataset_queries) // args.queries)][: args.queries]
    import gradio as gr

    results_gallery = gr.Gallery(columns=5)  # as the page's: encodes the framed results to files

    def serve(query):
        outputs = answer_query(searchers, query, args.top_k)
        return results_gallery.postprocess(outputs[0])

    for query in queries[:2]:  # warm-up
        serve(query)
    latencies = []
    for query in queries:
        begun = time.perf_counter()
        serve(query)
        latencies.append(time.perf_counter() - begun)

    image = read_query(queries[0])
    forward = statistics.median(timed(lambda: searcher.embed(image), 20))
    features = searcher.embed(image)
    faiss_search = statistics.median(timed(lambda: searcher.index.search(features, args.top_k), 20))
    gallery = np.array(searcher.index.features)

    def brute_force():
        distances = ((gallery - features) ** 2).sum(axis=1)
        top = np.argpartition(distances, args.top_k)[: args.top_k]
        return top[np.argsort(distances[top])]

    brute = statistics.median(timed(brute_force, 5))
    median, p95 = statistics.median(latencies), float(np.percentile(latencies, 95))
    print(
        f"query latency, server side (answer and Gradio's encoding of the results), top {args.top_k} "
        f"over {len(queries)} queries: median "
        f"{1000 * median:.0f} ms, p95 {1000 * p95:.0f} ms (goal < 200 ms)"
    )
    print(
        f"  peers: model forward alone {1000 * forward:.0f} ms (latency {median / forward:.2f}x it), "
        f"FAISS search {1000 * faiss_search:.1f} ms, numpy brute force {1000 * brute:.1f} ms "
        f"(FAISS {brute / faiss_search:.1f}x faster)"
    )

    page = build_app(searchers)
    url = launch(page, "127.0.0.1", free_port())
    try:
        from gradio_client import Client, handle_file

        client = Client(url, verbose=False)
        client.predict(handle_file(str(queries[0])), args.top_k, api_name="/search")
        round_trips = []
        for query in queries[:10]:
            begun = time.perf_counter()
            client.predict(handle_file(str(query)), args.top_k, api_name="/search")
            round_trips.append(time.perf_counter() - begun)
        print(f"round trip through gradio_client (HTTP, upload, encoding): median "
              f"{1000 * statistics.median(round_trips):.0f} ms")  # fmt: skip
    finally:
        page.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
