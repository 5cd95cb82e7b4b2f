"""A fair comparison in the shape of the papers' Table 8: for each seed and each K, the K models
trained without grafting (`--no-graft`: independent models at exactly the grafted models'
learning rates, so the best of them is a learning-rate-tuned baseline) and the K models grafted;
same data, same budget. Finished runs are reused, interrupted ones resumed.

    reidgraft-compare --config FILE [--seeds 3] [--models 2 4] [--output DIR]

Writes DIR/comparison.md, comparison.json and comparison.png (default DIR: runs/compare-<config
name>). A run's score is its best model's at the last epoch (mean and standard deviation over
seeds); the best-epoch column is labelled as chosen on the test data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from ..config import ConfigError, build_config, load_yaml
from ..data import CLASSIFICATION, DataMissingError, dataset_spec
from ..data.loaders import ImageReadError
from ..engine.runs import check_names, finish_run, load_data
from ..files import atomic_write, atomic_write_json, atomic_write_text
from . import with_cpu_allocator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the recipe every run starts from")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    parser.add_argument(
        "--models", type=int, nargs="+", default=[2, 4], help="the K to compare (default: 2 4)"
    )
    parser.add_argument(
        "--output", help="folder for the runs and the table (default: runs/compare-<config name>)"
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def methods_for(k: int) -> list[tuple[str, bool]]:
    """(label, graft) pairs for one K; K = 1 is the single-model baseline alone."""
    if k == 1:
        return [("single model", False)]
    return [(f"{k} models, no grafting (best)", False), (f"{k} models, grafting (best)", True)]


def replicate_seed(replicate: int) -> int:
    """The run seed of replicate s: its model k uses seed 1000 * s + k (the trainer adds k), so
    no two replicates share an initialisation or a data order for K up to 1000."""
    return 1000 * replicate


def score(metrics: dict, primary: str, secondary: str) -> dict[str, float]:
    """The run's best model at the last epoch, and the best evaluated epoch of any model."""
    final = max(metrics["final"], key=lambda row: row[primary])
    best = max(metrics.get("best") or metrics["final"], key=lambda row: row[primary])
    return {primary: final[primary], secondary: final[secondary], "best_epoch": best[primary]}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_outputs(rows: list[dict], keys: tuple[str, str], output: Path, source: str) -> None:
    primary, secondary = keys
    label = {"mAP": "mAP", "rank1": "rank-1", "top1": "top-1"}
    header = (
        f"| method | K | {label[primary]} (last epoch) | "
        + (f"{label[secondary]} (last epoch) | " if secondary != primary else "")
        + f"{label[primary]} (best epoch, chosen on the test set) | seeds |"
    )
    lines = [f"Comparison for `{source}`: mean ± standard deviation over seeds, in %.", "", header]
    lines.append("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        cells = [row["method"], str(row["models"])]
        for key in (primary, secondary, "best_epoch") if secondary != primary else (primary, "best_epoch"):
            mean, std = row[key]
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}")
        cells.append(str(len(row["runs"])))
        lines.append("| " + " | ".join(cells) + " |")
    atomic_write_text(output / "comparison.md", "\n".join(lines) + "\n")
    atomic_write_json(output / "comparison.json", {"config": source, "metric": primary, "rows": rows})

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(4, 1.3 * len(rows)), 3.5))
    means = [100 * row[primary][0] for row in rows]
    errors = [100 * row[primary][1] for row in rows]
    colours = ["tab:green" if row["graft"] else "tab:gray" for row in rows]
    axes.bar(range(len(rows)), means, yerr=errors, capsize=4, color=colours)
    axes.set_xticks(range(len(rows)), [row["method"].replace(", ", ",\n") for row in rows], fontsize=7)
    axes.set_ylabel(f"{label[primary]} (%), last epoch")
    atomic_write(
        output / "comparison.png",
        lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
    )
    plt.close(figure)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.seeds < 1 or any(k < 1 for k in args.models):
            raise ConfigError("--seeds and every --models value must be at least 1")
        recipe = load_yaml(args.config)
        base = build_config(recipe)
        check_names(base)
        output = Path(args.output or Path("runs") / f"compare-{Path(args.config).stem}")
        classification = dataset_spec(base.dataset).task == CLASSIFICATION
        keys = ("top1", "top1") if classification else ("mAP", "rank1")
        data = load_data(base)
        rows = []
        for k in dict.fromkeys(args.models):  # in the order given, once each
            for method, graft in methods_for(k):
                scores, runs = [], []
                for seed in range(args.seeds):
                    name = f"seed{seed}-k{k}-{'graft' if graft else 'nograft'}"
                    chosen = {"seed": replicate_seed(seed), "models": k, "graft": graft}
                    config = build_config(recipe, **chosen, output=str(output / name))
                    log = lambda line, name=name: print(f"[{name}] {line}")  # noqa: E731
                    # a run already in the folder continues only if it trained this very recipe
                    metrics, done = finish_run(config, data, log=log)
                    print(f"[{name}] {done}")
                    scores.append(score(metrics, *keys))
                    runs.append(name)
                row = {"method": method, "models": k, "graft": graft, "runs": runs, "per_seed": scores}
                for key in dict.fromkeys((*keys, "best_epoch")):
                    row[key] = mean_std([entry[key] for entry in scores])
                rows.append(row)
        output.mkdir(parents=True, exist_ok=True)
        write_outputs(rows, keys, output, args.config)
    except (ConfigError, DataMissingError, ImageReadError, ValueError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    print((output / "comparison.md").read_text())
    print(f"written: {output / 'comparison.md'}, comparison.json, comparison.png")
    return 0


def run() -> int:
    """The command as installed (and as `python tools/...`): `main` with the CPU allocator."""
    return with_cpu_allocator(main)


if __name__ == "__main__":
    sys.exit(run())
