"""The gallery-search demo: query a gallery with a trained (grafted) model in the browser.

    reidgraft-demo [RUN_DIR] [--model k] [--gallery DATASET_OR_FOLDER]
                  [--compare RUN_DIR] [--cache-dir DIR] [--host 127.0.0.1] [--port 7860]

With no arguments it serves the newest run under runs/ and that run's dataset gallery (RUN_DIR
is the run folder, as every other command takes it; `--checkpoint RUN_DIR` still works). The
gallery's features are extracted once and cached next to the run's checkpoint (or in
--cache-dir). SIGTERM or Ctrl-C stops it, removing every upload it stored.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..config import AMP_CHOICES, DEVICES
from ..demo import (
    DEFAULT_RUNS,
    DemoError,
    GallerySearch,
    build_app,
    gallery_index,
    launch,
    load_run_model,
    newest_run,
    resolve_gallery,
)
from ..device import resolve_device
from ..index import KINDS
from .entry import EXIT_TERMINATED, USER_ERRORS, report_error, terminated

MAX_UPLOAD_MB = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir",
        nargs="?",
        metavar="RUN_DIR",
        help=f"a training run (default: newest under {DEFAULT_RUNS}/)",
    )
    parser.add_argument("--checkpoint", metavar="RUN_DIR", help="the same as RUN_DIR (the older spelling)")
    parser.add_argument(
        "--model",
        type=int,
        help="which of the run's models (default: the best of K on validation, else model 0)",
    )
    parser.add_argument("--gallery", help="a dataset name or a folder of images (default: the run's dataset)")
    parser.add_argument("--compare", metavar="RUN_DIR", help="a second run ranked beside the first")
    parser.add_argument("--compare-model", type=int, help="which of the second run's models")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="where the models run (default: auto)"
    )
    parser.add_argument(
        "--amp", default="auto", choices=AMP_CHOICES,
        help="autocast for embedding images (default: auto, the measured default for the arch and device)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="images per forward pass when indexing the gallery (default: 64)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="image-reading processes for indexing (default: 0)"
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR",
        help="where the gallery's features and index are cached (default: RUN_DIR/gallery_cache; a "
        "folder of your own serves a read-only run folder, and many runs)",
    )  # fmt: skip
    parser.add_argument(
        "--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
        help=f"the largest query upload accepted, in MB (default: {MAX_UPLOAD_MB:g}; a person crop is "
        "far smaller)",
    )  # fmt: skip
    parser.add_argument(
        "--index", default="auto", choices=KINDS,
        help="gallery search: flat (exact), ivf or hnsw (approximate, for large galleries), auto: flat "
        "below 100,000 images, ivf from there; the AP shown is always exact (default: auto)",
    )  # fmt: skip
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_dir and args.checkpoint and args.run_dir != args.checkpoint:
        parser.error(f"two runs given, {args.run_dir} and --checkpoint {args.checkpoint}: give one")
    args.checkpoint = args.checkpoint or args.run_dir
    return args


def prepare(args) -> tuple[list[GallerySearch], list[str]]:
    """The searchers, one per model (gallery indexed or read from the cache), and example queries."""
    if not 0 < args.max_upload_mb < float("inf"):
        raise DemoError(f"--max-upload-mb {args.max_upload_mb:g}: give a size above 0, in MB (e.g. 10)")
    started = time.perf_counter()
    device = resolve_device(args.device)
    run_dir = args.checkpoint or newest_run()
    run_model, config = load_run_model(run_dir, args.model, device, args.amp)
    gallery = resolve_gallery(args.gallery, config, run_model)
    runs = [run_model]
    if args.compare:
        runs.append(load_run_model(args.compare, args.compare_model, device, args.amp)[0])
    searchers = []
    for run in runs:
        index, cached = gallery_index(
            run, gallery, batch_size=args.batch_size, workers=args.workers, kind=args.index,
            cache_dir=args.cache_dir,
        )  # fmt: skip
        if index.note:
            print(f"note: {index.note}")
        print(
            f"{run.label}: {len(gallery)} gallery images {'from the cache' if cached else 'indexed'} "
            f"({index.kind} index)"
        )
        searchers.append(GallerySearch(run, gallery, index))
    print(f"ready in {time.perf_counter() - started:.1f} s")
    return searchers, gallery.example_queries


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        app = build_app(*prepare(args))
        url = launch(app, args.host, args.port, max_upload_mb=args.max_upload_mb)
    except USER_ERRORS as error:  # (DemoError is a ValueError)
        return report_error("demo", error)
    print(f"serving on {url} (Ctrl-C stops)")
    try:
        app.block_thread()  # (Gradio catches the interrupt itself and returns)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()  # (Gradio then deletes every upload and thumbnail it stored)
    return EXIT_TERMINATED if terminated() else 0  # Ctrl-C is how a server is stopped: 0


if __name__ == "__main__":
    sys.exit(main())
