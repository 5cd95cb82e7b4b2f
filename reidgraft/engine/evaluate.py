"""A finished run evaluated on its dataset's query and gallery (or another re-ID dataset's):
per-model mAP, mINP and rank-1/5/10, written as evaluation.json, and ranked pictures when asked.
What `reidgraft-evaluate` does, callable from Python."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import build_config
from ..data import REID, dataset_spec, load_reid_dataset, load_run_splits
from ..device import resolve_device
from ..evaluation import ranked_results_grid
from ..files import atomic_write_json, check_own_outputs, check_writable, claim_outputs, record_outputs
from ..index import GalleryIndex
from .run_dir import RunDir
from .tasks import ReidTask
from .trained import TrainedRun


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate_run` found and wrote."""

    dataset: str
    rerank: bool
    rows: list[dict[str, Any]]  # per chosen model: its number and metrics
    queries: int
    gallery: int
    metrics_file: Path
    pictures: Path | None


def evaluate_run(
    run_dir: str | Path,
    *,
    model: int | None = None,
    dataset: str | None = None,
    root: str | None = None,
    rerank: bool = False,
    visualize: int = 0,
    output: str | Path | None = None,
    device: str = "auto",
    amp: str = "auto",
    batch_size: int = 128,
    index: str = "auto",
    workers: int = 0,
) -> Evaluation:
    """Evaluate every model of the run (or `model` alone) on its own data (which must be what the
    run recorded), or on `dataset` under `root`; write OUTPUT/evaluation.json (default: the run's
    folder) and, with `visualize` N, PNG grids of N queries' top-10 under OUTPUT/ranked.
    ValueError (one line) for a bad argument or an output that is not reidgraft's, before any
    feature is extracted."""
    run = TrainedRun(run_dir)
    run.require_reid(
        "reidgraft-evaluate ranks re-ID galleries (its top-1/top-5 are in the run's metrics.json)"
    )
    dataset = dataset or run.raw_config["dataset"]
    dataset_spec(dataset, REID)  # a clear error before anything is read
    if model is not None and not 0 <= model < run.count:
        raise ValueError(f"--model {model}: the run has models 0..{run.count - 1}")
    if visualize < 0 or batch_size < 1:
        raise ValueError("--visualize must be >= 0 and --batch-size >= 1")
    output = Path(output) if output else RunDir(run_dir).path
    check_writable(output)  # before the features are extracted, not after
    written = ["evaluation.json", *(["ranked"] if visualize else [])]
    check_own_outputs(output, written, "--output", ours=RunDir(output).is_ours())
    chosen = list(range(run.count)) if model is None else [model]
    config = build_config(
        run.raw_config, dataset=dataset, root=root, eval_batch_size=batch_size, workers=workers
    )
    if dataset != run.raw_config["dataset"]:
        splits = load_reid_dataset(dataset, config.root, config.to_dict())
    else:  # the run's own data: it must be what the run recorded
        splits = load_run_splits(dataset, config.root, run.data, run_dir, config.to_dict())
    where = resolve_device(device)
    amp, channels_last = run.precision(amp, where)
    every_model = run.models(where, channels_last)
    task = ReidTask(config, splits)
    task.runs_on(amp, channels_last)
    query_features, gallery_features = task.features([every_model[k] for k in chosen])
    rows = task.score(query_features, gallery_features, model_ids=chosen, rerank=rerank)

    claim_outputs(output, written)  # (now: a stopped write below leaves them reidgraft's)
    if visualize:
        draw_ranked(splits, chosen, query_features, gallery_features, config.metric, visualize, output, index)
    atomic_write_json(output / "evaluation.json", {"dataset": dataset, "rerank": rerank, "models": rows})
    record_outputs(output, written)
    pictures = output / "ranked" if visualize else None
    return Evaluation(
        dataset, rerank, rows, len(splits.query), len(splits.gallery), output / "evaluation.json", pictures
    )


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
