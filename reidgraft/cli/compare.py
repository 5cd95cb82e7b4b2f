"""An honest comparison of grafting with the baselines it must beat, in the shape of the papers'
Table 8, with paired differences and bootstrap intervals.

    reidgraft-compare --config FILE [--seeds 3] [--models 2 4] [--methods ...] [--output DIR]

For each seed s and each K it trains (or reuses, when the whole recipe matches) these runs, and
scores every model on the test data, query by query (image by image for classification):

    single            K = 1 at the base learning rate
    nograft           the K models trained independently at the grafted models' learning rates
    nograft_ensemble  those K models together: concatenated L2-normalised features
    nograft_average   their weight average, batch-norm statistics re-estimated on training images
    graft             the K grafted models
    graft_same_lr     grafted, every model at the base learning rate

Each K-model method is reported three ways: model 0 (declared before training), the mean over
its K models, and the best of K (chosen on validation when the recipe holds some out, else on the
test set, and labelled so). Model k of replicate s uses seed 1000 s + k. `paired` holds, per
seed, graft minus nograft, nograft_ensemble and single, with a 95% bootstrap interval that
resamples queries (or test images) and seeds.

Writes DIR/comparison.md, comparison.json and comparison.png (default DIR:
runs/compare-<config name>). Each run's per-item scores are kept in its folder, so a comparison
run again scores only what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, TrainConfig, build_config, load_yaml
from ..data import CLASSIFICATION, DataMissingError, dataset_spec
from ..data.loaders import ImageReadError
from ..device import resolve_device
from ..engine import load_checkpoint
from ..engine.comparison import (
    Scores,
    bootstrap_difference,
    ensemble_scores,
    load_scores,
    per_item_scores,
    save_scores,
    weight_average,
)
from ..engine.features import models_from_checkpoint
from ..engine.preflight import preflight
from ..engine.run_dir import RunDir
from ..engine.runs import finish_run, load_data, result_config
from ..engine.tasks import make_task
from ..files import atomic_write, atomic_write_json, atomic_write_text
from ..index import state_fingerprint
from . import with_cpu_allocator

# method -> what its run changes in the recipe (None: built from the nograft run's models)
METHODS: dict[str, dict[str, Any] | None] = {
    "single": {"models": 1, "graft": False},
    "nograft": {"graft": False},
    "nograft_ensemble": None,
    "nograft_average": None,
    "graft": {"graft": True},
    "graft_same_lr": {"graft": True, "lr_spread": "none"},
}
REPORTS = ("model0", "mean", "best_of_k")
AGAINST = ("nograft", "nograft_ensemble", "single")  # graft minus each of these, paired by seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the recipe every run starts from")
    parser.add_argument("--seeds", type=int, default=3, help="replicates 0..N-1 (default: 3)")
    parser.add_argument(
        "--models", type=int, nargs="+", default=[2, 4], help="the K to compare, 2 or more (default: 2 4)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
        help="the rows to produce (default: all of them)",
    )  # fmt: skip
    parser.add_argument(
        "--output", help="folder for the runs and the table (default: runs/compare-<config name>)"
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def replicate_seed(replicate: int) -> int:
    """The run seed of replicate s: its model k uses seed 1000 * s + k (the trainer adds k), so
    no two replicates share an initialisation or a data order for K up to 1000."""
    return 1000 * replicate


@dataclass
class FinishedRun:
    """A run of the comparison, trained or reused: its metrics, its models' weights, and the
    models themselves, built only when something has to be scored."""

    name: str
    folder: RunDir
    metrics: dict[str, Any]
    checkpoint: dict[str, Any]  # config, num_classes and the models' states
    fingerprints: list[str]  # one hash per model state
    device: Any
    _models: list | None = field(default=None, repr=False)

    @property
    def precision(self) -> dict[str, Any]:
        return self.metrics.get("precision") or {"amp": "none", "channels_last": False}

    def models(self) -> list:
        if self._models is None:
            layout = self.precision["channels_last"]
            self._models = models_from_checkpoint(self.checkpoint, self.device, layout)
        return self._models


class Comparison:
    """The runs of one comparison and their per-item scores, trained or reused on demand. Scores
    are kept in each run's folder (`RunDir.scores_cache`) under a key of everything they depend
    on (the models' weights, the scoring recipe, the test data, the precision), so a comparison
    run again, or widened by a seed or a method, scores only what is new."""

    def __init__(self, recipe: dict[str, Any], base: TrainConfig, output: Path):
        self.recipe, self.base, self.output = recipe, base, output
        self.data = load_data(base)
        self.task = make_task(base, self.data)  # scores on its test data (validation held out)
        self.device = resolve_device(base.device)
        self._runs: dict[str, FinishedRun] = {}

    def run(self, method: str, k: int, seed: int) -> FinishedRun:
        """A run of `method` (trained, resumed or reused)."""
        models = 1 if method == "single" else k
        name = f"seed{seed}-k{models}-{method}"
        if name not in self._runs:
            changes = {**METHODS[method], "models": models, "seed": replicate_seed(seed)}
            config = build_config(self.recipe, **changes, output=str(self.output / name))
            metrics, done = finish_run(config, self.data, log=lambda line: print(f"[{name}] {line}"))
            print(f"[{name}] {done}")
            payload = load_checkpoint(self.output / name)
            checkpoint = {key: payload[key] for key in ("config", "num_classes", "models")}
            fingerprints = [state_fingerprint(state) for state in checkpoint["models"]]
            folder = RunDir(self.output / name)
            self._runs[name] = FinishedRun(name, folder, metrics, checkpoint, fingerprints, self.device)
        return self._runs[name]

    def scored(self, run: FinishedRun, what: str, score: Callable[[list], list[Scores]]) -> list[Scores]:
        """`score(models)` of a run, or what an earlier comparison kept of it under the same key.
        Models are scored as their run evaluated itself (precision and memory format), so that
        the per-query scores average to its own metrics."""
        key = json.dumps(
            {
                "what": what,
                "models": run.fingerprints,
                "recipe": result_config(self.base.to_dict()),
                "data": self.task.data_fingerprint(),
                "precision": run.precision,
            },
            sort_keys=True,
            default=str,
        )
        key = hashlib.sha256(key.encode()).hexdigest()
        path = run.folder.scores_cache(what)
        kept = load_scores(path, key)
        if kept is not None:
            print(f"[{run.name}] {what} scores reused from {path.name}")
            return kept
        self.task.runs_on(run.precision["amp"], run.precision["channels_last"])
        scores = score(run.models())
        save_scores(path, key, scores)
        return scores

    def scores(self, method: str, k: int, seed: int) -> dict[str, Any]:
        """{report: per-item scores} of a method for one seed, and where best_of_k was chosen."""
        if METHODS[method] is None:  # built from the nograft run
            run = self.run("nograft", k, seed)

            def together_scores(models: list) -> list[Scores]:
                if method == "nograft_ensemble":
                    return [ensemble_scores(self.task, models)]
                return per_item_scores(self.task, [weight_average(self.task, models)])

            (together,) = self.scored(run, method, together_scores)
            return {"reports": dict.fromkeys(REPORTS, together), "chosen_on": None, "one_value": True}
        run = self.run(method, k, seed)
        each = self.scored(run, "models", lambda models: per_item_scores(self.task, models))
        best = (run.metrics.get("report") or {}).get("best_of_k") or {"model": 0, "chosen_on": None}
        mean = {key: np.mean([scores[key] for scores in each], axis=0) for key in each[0]}
        reports = {"model0": each[0], "mean": mean, "best_of_k": each[best["model"]]}
        return {"reports": reports, "chosen_on": best["chosen_on"], "one_value": len(each) == 1}


def summarise(per_seed: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """One row's reports: each metric's mean and standard deviation over seeds (fractions)."""
    row: dict[str, Any] = {}
    for report in REPORTS:
        values = {key: [float(np.mean(seed["reports"][report][key])) for seed in per_seed] for key in keys}
        row[report] = {
            key: [statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0]
            for key, v in values.items()
        }
        row[report]["per_seed"] = values[keys[0]]
    chosen = {seed["chosen_on"] for seed in per_seed} - {None}
    row["best_of_k"]["chosen_on"] = chosen.pop() if len(chosen) == 1 else None
    row["one_value"] = per_seed[0]["one_value"]
    return row


def write_outputs(
    rows: list[dict], paired: list[dict], keys: tuple[str, ...], output: Path, source: str
) -> None:
    label = {"mAP": "mAP", "rank1": "rank-1", "top1": "top-1"}
    primary = keys[0]
    lines = [
        f"Comparison for `{source}`, on the test set: mean ± standard deviation over seeds, in %.",
        "Reports: model 0 (declared before training), the mean over the K models, and the best of K "
        "(its column says where it was chosen). Methods with one model have one value.",
        "",
        "| method | K | " + " | ".join(f"{label[key]} {report}" for report in REPORTS for key in keys)
        + " | best of K chosen on | seeds |",
    ]  # fmt: skip
    lines.append("|" + "---|" * (3 + len(REPORTS) * len(keys) + 1))
    for row in rows:
        cells = [row["method"], str(row["models"])]
        for report in REPORTS:
            for key in keys:
                mean, std = row[report][key]
                cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}")
        cells.append("-" if row["one_value"] else str(row["best_of_k"]["chosen_on"]))
        cells.append(str(len(row["runs"])))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired differences, graft minus each baseline, per seed on the same queries (images), in "
        "points; 95% bootstrap interval over queries (images) and seeds:",
        "",
        "| K | graft minus | report | metric | difference | 95% interval |",
        "|---|---|---|---|---|---|",
    ]
    for entry in paired:
        low, high = entry["ci95"]
        lines.append(
            f"| {entry['models']} | {entry['against']} | {entry['report']} | {label[entry['metric']]} | "
            f"{100 * entry['difference']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] |"
        )
    atomic_write_text(output / "comparison.md", "\n".join(lines) + "\n")
    atomic_write_json(
        output / "comparison.json", {"config": source, "metric": primary, "rows": rows, "paired": paired}
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, differences) = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 5), 3.8))
    width = 0.27
    for offset, report in enumerate(REPORTS):
        means = [100 * row[report][primary][0] for row in rows]
        errors = [100 * row[report][primary][1] for row in rows]
        positions = [i + (offset - 1) * width for i in range(len(rows))]
        bars.bar(positions, means, width, yerr=errors, capsize=2, label=report)
    labels = [f"{row['method']} K={row['models']}" for row in rows]
    bars.set_xticks(range(len(rows)), labels, fontsize=6, rotation=45, ha="right")
    bars.set_ylabel(f"{label[primary]} (%), last epoch")
    bars.legend(fontsize=7)
    shown = [entry for entry in paired if entry["metric"] == primary]
    for i, entry in enumerate(shown):
        low, high = entry["ci95"]
        value = 100 * entry["difference"]
        differences.errorbar(i, value, yerr=[[value - 100 * low], [100 * high - value]], fmt="o", capsize=3)
    differences.axhline(0, color="grey", linewidth=0.8)
    differences.set_xticks(
        range(len(shown)), [f"K={e['models']} −{e['against']}\n{e['report']}" for e in shown], fontsize=5,
        rotation=90,
    )  # fmt: skip
    differences.set_ylabel(f"graft minus baseline, {label[primary]} points (95% CI)")
    atomic_write(
        output / "comparison.png",
        lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
    )
    plt.close(figure)


def compare(args: argparse.Namespace) -> Path:
    if args.seeds < 1 or any(k < 2 for k in args.models):
        raise ConfigError(
            "--seeds must be at least 1 and every --models value at least 2 (K = 1 is `single`)"
        )
    recipe = load_yaml(args.config)
    base = build_config(recipe)
    preflight(base)  # names, devices, precision, weights and the data's presence, before any work
    output = Path(args.output or Path("runs") / f"compare-{Path(args.config).stem}")
    classification = dataset_spec(base.dataset).task == CLASSIFICATION
    keys = ("top1",) if classification else ("mAP", "rank1")
    comparison = Comparison(recipe, base, output)
    methods = list(dict.fromkeys(args.methods))
    seeds = range(args.seeds)
    rows, scores = [], {}
    for k in dict.fromkeys(args.models):
        for method in methods:
            if method == "single" and any(row["method"] == "single" for row in rows):
                scores[(method, k)] = scores[(method, args.models[0])]
                continue
            per_seed = [comparison.scores(method, k, seed) for seed in seeds]
            scores[(method, k)] = per_seed
            models = 1 if method == "single" else k
            base_method = "nograft" if METHODS[method] is None else method
            row = {"method": method, "models": models, **summarise(per_seed, keys)}
            row["runs"] = [f"seed{seed}-k{models}-{base_method}" for seed in seeds]
            rows.append(row)
    paired = []
    for k in dict.fromkeys(args.models):
        if ("graft", k) not in scores:
            continue
        for against in (m for m in AGAINST if (m, k) in scores):
            for report in REPORTS:
                for key in keys:
                    ours = np.stack([seed["reports"][report][key] for seed in scores[("graft", k)]])
                    theirs = np.stack([seed["reports"][report][key] for seed in scores[(against, k)]])
                    difference, (low, high) = bootstrap_difference(ours, theirs)
                    paired.append({
                        "models": k, "against": against, "report": report, "metric": key,
                        "difference": difference, "ci95": [low, high],
                    })  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    write_outputs(rows, paired, keys, output, args.config)
    return output


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        output = compare(args)
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
