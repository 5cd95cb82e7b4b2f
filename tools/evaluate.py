"""Evaluate a training run: extract features of each model for its dataset's query and gallery,
print mAP, mINP and rank-1/5/10 per model, write them as JSON, and optionally draw ranked
results.

    python tools/evaluate.py RUN_DIR [--model k] [--dataset NAME --root DIR] [--rerank]
                                     [--visualize N] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidgraft.data import DATASETS, DataMissingError, load_reid_dataset  # noqa: E402
from reidgraft.data.loaders import ImageReadError  # noqa: E402
from reidgraft.engine import METRIC_KEYS, load_checkpoint  # noqa: E402
from reidgraft.engine.checkpoint import atomic_write_json  # noqa: E402
from reidgraft.engine.features import extract_features, models_from_checkpoint  # noqa: E402
from reidgraft.engine.trainer import resolve_device  # noqa: E402
from reidgraft.evaluation import evaluate, ranked_results_grid  # noqa: E402
from reidgraft.index import GalleryIndex  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a reidgraft run folder (or its checkpoint.pt)")
    parser.add_argument("--model", type=int, help="evaluate only model k (default: every model)")
    parser.add_argument("--dataset", help="evaluate on another dataset than the run's")
    parser.add_argument("--root", help="data root (default: the run's)")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    parser.add_argument("--visualize", type=int, default=0, metavar="N", help="PNG grids of N queries")
    parser.add_argument("--output", help="folder for evaluation.json and pictures (default: RUN_DIR)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0)
    return parser.parse_args(argv)


def run(args) -> int:
    payload = load_checkpoint(Path(args.run_dir))
    config = payload["config"]
    if payload.get("task", "reid") != "reid":
        raise ValueError(
            f"{args.run_dir} is a {payload['task']} run; tools/evaluate.py ranks re-ID galleries "
            "(its top-1/top-5 are in the run's metrics.json)"
        )
    dataset = args.dataset or config["dataset"]
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    count = len(payload["models"])
    chosen = range(count) if args.model is None else [args.model]
    if args.model is not None and not 0 <= args.model < count:
        raise ValueError(f"--model {args.model}: the run has models 0..{count - 1}")
    if args.visualize < 0 or args.batch_size < 1:
        raise ValueError("--visualize must be >= 0 and --batch-size >= 1")
    splits = load_reid_dataset(dataset, args.root or config["root"])
    device = resolve_device(args.device)
    every_model = models_from_checkpoint(payload, device)
    models = [every_model[k] for k in chosen]
    shape = dict(
        height=config["height"], width=config["width"], batch_size=args.batch_size, workers=args.workers
    )
    query_features = extract_features(models, splits.query, device=device, what="query", **shape)
    gallery_features = extract_features(models, splits.gallery, device=device, what="gallery", **shape)
    labels = [[item[i] for item in items] for items in (splits.query, splits.gallery) for i in (1, 2)]
    query_pids, query_cams, gallery_pids, gallery_cams = labels

    output = Path(
        args.output or (Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(args.run_dir).parent)
    )
    rows = []
    for k, query, gallery in zip(chosen, query_features, gallery_features, strict=True):
        result = evaluate(
            query, gallery, query_pids, gallery_pids, query_cams, gallery_cams,
            metric=config["metric"], max_rank=config["max_rank"], rerank=args.rerank,
        )  # fmt: skip
        rows.append({"model": k, **{key: float(getattr(result, key)) for key in METRIC_KEYS}})
        if args.visualize:
            index = GalleryIndex(gallery.numpy(), config["metric"])
            # Enough neighbours that 10 remain after same-id-same-camera items are skipped.
            _, ranked = index.search(query[: args.visualize].numpy(), 60)
            for q, ((path, pid, cam), order) in enumerate(zip(splits.query, ranked, strict=False)):
                ranked_results_grid(
                    path, pid, cam,
                    [p for p, _, _ in splits.gallery], gallery_pids, gallery_cams, order.tolist(),
                    output / "ranked" / f"model{k}_query{q:04d}.png",
                )  # fmt: skip
    atomic_write_json(output / "evaluation.json", {"dataset": dataset, "rerank": args.rerank, "models": rows})
    label = f"{dataset} (re-ranked)" if args.rerank else dataset
    print(f"{label}: {len(splits.query)} queries, {len(splits.gallery)} gallery")
    print(f"{'model':>5}  " + "  ".join(f"{key:>7}" for key in METRIC_KEYS))
    for row in rows:
        print(f"{row['model']:>5}  " + "  ".join(f"{100 * row[key]:>6.2f}%" for key in METRIC_KEYS))
    print(
        f"metrics: {output / 'evaluation.json'}"
        + (f"; pictures: {output / 'ranked'}" if args.visualize else "")
    )
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (DataMissingError, ImageReadError, ValueError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
