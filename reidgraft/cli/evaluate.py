"""Evaluate a training run: extract features of each model for its dataset's query and gallery,
print mAP, mINP and rank-1/5/10 per model, write them as JSON, and optionally draw ranked
results.

    reidgraft-evaluate RUN_DIR [--model k] [--dataset NAME --root DIR] [--rerank]
                               [--visualize N] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import AMP_CHOICES, DEVICES, build_config
from ..data import REID, DataMissingError, dataset_spec, load_reid_dataset, load_run_splits
from ..device import resolve_device
from ..engine.logging import metrics_table
from ..engine.run_dir import RunDir
from ..engine.tasks import REID_METRICS as METRIC_KEYS
from ..engine.tasks import ReidTask
from ..engine.trained import TrainedRun
from ..evaluation import ranked_results_grid
from ..files import atomic_write_json, check_own_outputs, check_writable, claim_outputs, record_outputs
from ..images import ImageReadError
from ..index import KINDS, GalleryIndex


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


def evaluate_run(args) -> int:
    run = TrainedRun(args.run_dir)
    run.require_reid(
        "reidgraft-evaluate ranks re-ID galleries (its top-1/top-5 are in the run's metrics.json)"
    )
    dataset = args.dataset or run.raw_config["dataset"]
    dataset_spec(dataset, REID)  # a clear error before anything is read
    count = run.count
    if args.model is not None and not 0 <= args.model < count:
        raise ValueError(f"--model {args.model}: the run has models 0..{count - 1}")
    if args.visualize < 0 or args.batch_size < 1:
        raise ValueError("--visualize must be >= 0 and --batch-size >= 1")
    output = Path(args.output) if args.output else RunDir(args.run_dir).path
    check_writable(output)  # before the features are extracted, not after
    written = ["evaluation.json", *(["ranked"] if args.visualize else [])]
    check_own_outputs(output, written, "--output", ours=RunDir(output).is_ours())
    chosen = list(range(count)) if args.model is None else [args.model]
    config = build_config(
        run.raw_config, dataset=dataset, root=args.root, eval_batch_size=args.batch_size,
        workers=args.workers,
    )  # fmt: skip
    if args.dataset and args.dataset != run.raw_config["dataset"]:
        splits = load_reid_dataset(dataset, config.root, config.to_dict())
    else:  # the run's own data: it must be what the run recorded
        splits = load_run_splits(dataset, config.root, run.data, args.run_dir, config.to_dict())
    device = resolve_device(args.device)
    amp, channels_last = run.precision(args.amp, device)
    every_model = run.models(device, channels_last)
    task = ReidTask(config, splits)
    task.runs_on(amp, channels_last)
    query_features, gallery_features = task.features([every_model[k] for k in chosen])
    rows = task.score(query_features, gallery_features, model_ids=chosen, rerank=args.rerank)

    claim_outputs(output, written)  # (now: a stopped write below leaves them reidgraft's)
    if args.visualize:
        draw_ranked(
            splits,
            chosen,
            query_features,
            gallery_features,
            config.metric,
            args.visualize,
            output,
            args.index,
        )
    atomic_write_json(output / "evaluation.json", {"dataset": dataset, "rerank": args.rerank, "models": rows})
    record_outputs(output, written)
    label = f"{dataset} (re-ranked)" if args.rerank else dataset
    print(f"{label}: {len(splits.query)} queries, {len(splits.gallery)} gallery")
    for line in metrics_table(rows, METRIC_KEYS):
        print(line)
    print(
        f"metrics: {output / 'evaluation.json'}"
        + (f"; pictures: {output / 'ranked'}" if args.visualize else "")
    )
    return 0


def draw_ranked(
    splits, chosen, query_features, gallery_features, metric, count, output: Path, kind: str = "auto"
) -> None:
    """PNG grids of the first `count` queries' top-10 for each chosen model."""
    gallery_paths = [path for path, _, _ in splits.gallery]
    gallery_pids = [pid for _, pid, _ in splits.gallery]
    gallery_cams = [cam for _, _, cam in splits.gallery]
    for k, query, gallery in zip(chosen, query_features, gallery_features, strict=True):
        index = GalleryIndex(gallery.cpu().numpy(), metric, kind=kind)
        if index.note:
            print(f"note: {index.note}", file=sys.stderr)
        # Enough neighbours that 10 remain after same-id-same-camera items are skipped.
        _, ranked = index.search(query[:count].cpu().numpy(), 60)
        for q, ((path, pid, cam), order) in enumerate(zip(splits.query, ranked, strict=False)):
            ranked_results_grid(
                path, pid, cam, gallery_paths, gallery_pids, gallery_cams, order.tolist(),
                output / "ranked" / f"model{k}_query{q:04d}.png",
            )  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return evaluate_run(args)
    except (DataMissingError, ImageReadError, ValueError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from . import entry

    sys.exit(entry.evaluate())
