"""Evaluate a training run: extract features of each model for its dataset's query and gallery,
print mAP, mINP and rank-1/5/10 per model, write them as JSON, and optionally draw ranked
results.

    reidgraft-evaluate RUN_DIR [--model k] [--dataset NAME --root DIR] [--rerank]
                               [--visualize N] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys

from ..config import AMP_CHOICES, DEVICES
from ..engine.evaluate import evaluate_run
from ..engine.logging import metrics_table
from ..engine.tasks import REID_METRICS as METRIC_KEYS
from ..index import KINDS
from .entry import USER_ERRORS, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a reidgraft run folder (or its checkpoint.pt)")
    parser.add_argument("--model", type=int, help="evaluate only model k (default: every model)")
    parser.add_argument("--dataset", help="evaluate on another re-ID dataset than the run's")
    parser.add_argument("--root", help="data root (default: the run's)")
    parser.add_argument(
        "--rerank", action="store_true", help="k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)"
    )
    parser.add_argument(
        "--visualize", type=int, default=0, metavar="N", help="PNG grids of N queries' top-10 (default: 0)"
    )
    parser.add_argument("--output", help="folder for evaluation.json and pictures (default: RUN_DIR)")
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="where the models run (default: auto)"
    )
    parser.add_argument(
        "--amp", default="auto", choices=AMP_CHOICES,
        help="autocast for feature extraction (default: auto, the measured default for the arch and device)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    parser.add_argument(
        "--index", default="auto", choices=KINDS,
        help="search behind --visualize's pictures: flat, ivf, hnsw or auto (flat below 100,000 gallery "
        "images); metrics are always exact (default: auto)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=0, help="image-reading processes (default: 0)")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        found = evaluate_run(
            args.run_dir, model=args.model, dataset=args.dataset, root=args.root, rerank=args.rerank,
            visualize=args.visualize, output=args.output, device=args.device, amp=args.amp,
            batch_size=args.batch_size, index=args.index, workers=args.workers,
        )  # fmt: skip
    except USER_ERRORS as error:
        return report_error("evaluate", error)
    label = f"{found.dataset} (re-ranked)" if found.rerank else found.dataset
    print(f"{label}: {found.queries} queries, {found.gallery} gallery")
    for line in metrics_table(found.rows, METRIC_KEYS):
        print(line)
    print(f"metrics: {found.metrics_file}" + (f"; pictures: {found.pictures}" if found.pictures else ""))
    return 0


if __name__ == "__main__":
    from . import entry

    sys.exit(entry.evaluate())
