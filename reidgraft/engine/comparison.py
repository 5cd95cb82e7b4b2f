"""The comparison behind `reidgraft-compare`: for each seed and each K it trains (or reuses) the
runs of every method, scores their models query by query on the test data (image by image for
classification), builds the compute-matched baselines from K independent models (their feature
ensemble and their weight average), and pairs grafting with each baseline seed by seed.

    single            K = 1 at the base learning rate
    nograft           the K models trained independently at the grafted models' learning rates
    nograft_ensemble  those K models together (the task's `ensemble_scores`)
    nograft_average   their weight average, batch-norm statistics re-estimated on training images
    graft             the K grafted models
    graft_same_lr     grafted, every model at the base learning rate

Each K-model method is reported three ways: model 0 (declared before training), the mean over
its K models, and the best of K (chosen on validation when the recipe holds some out, else on the
test set, and labelled so). Model k of replicate s uses seed 1000 s + k. Per-item scores are kept
in each run's folder, so a comparison run again scores only what is new. The report is written
by `report.py`.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, TrainConfig, build_config, load_yaml
from ..device import resolve_device
from ..files import json_fingerprint, read_keyed_arrays, write_keyed_arrays
from ..index import state_fingerprint
from .features import model_device
from .preflight import preflight
from .run_dir import RunDir
from .runs import finish_run, load_data, result_config
from .tasks import Scores, make_task
from .trained import TrainedRun

BN_IMAGES = 4096  # training images that re-estimate an averaged model's BN statistics (at most)
SCORES_FORMAT = 1  # the layout of a saved scores file; another one is simply scored again

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


def replicate_seed(replicate: int) -> int:
    """The run seed of replicate s: its model k uses seed 1000 * s + k (the trainer adds k), so
    no two replicates share an initialisation or a data order for K up to 1000."""
    return 1000 * replicate


@torch.no_grad()
def weight_average(task, models: Sequence[nn.Module]) -> nn.Module:
    """One model whose weights are the K models' mean ("model soup"), with its batch-norm
    statistics re-estimated on up to BN_IMAGES training images (unaugmented, in list order):
    averaged running statistics do not describe the averaged weights' activations."""
    average = copy.deepcopy(models[0])
    states = [model.state_dict() for model in models]
    for key, tensor in average.state_dict().items():
        if tensor.is_floating_point():
            tensor.copy_(torch.stack([state[key].to(tensor.device) for state in states]).mean(dim=0))
    norms = [m for m in average.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return average.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over every batch seen
    average.train()
    device = model_device(average)
    for images in task.bn_images(BN_IMAGES):
        average(images.to(device))
    return average.eval()


@dataclass
class FinishedRun:
    """A run of the comparison, trained or reused: read through `TrainedRun`, its models built
    only when something has to be scored."""

    name: str
    run: TrainedRun
    device: torch.device
    fingerprints: list[str] = field(default_factory=list)  # one hash per model state
    _models: list | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.fingerprints = [state_fingerprint(self.run.state(k)) for k in range(self.run.count)]

    @property
    def folder(self) -> RunDir:
        return self.run.folder

    @property
    def metrics(self) -> dict[str, Any]:
        return self.run.metrics or {}

    @property
    def precision(self) -> dict[str, Any]:
        """The precision the run evaluated itself in, so that its per-query scores average to its
        own metrics."""
        return self.metrics.get("precision") or {"amp": "none", "channels_last": False}

    def models(self) -> list:
        if self._models is None:
            self._models = self.run.models(self.device, self.precision["channels_last"])
        return self._models


class Comparison:
    """The runs of one comparison and their per-item scores, trained or reused on demand. Scores
    are kept in each run's folder (`RunDir.scores_cache`) under a key of everything they depend
    on (the models' weights, the scoring recipe, the test data, the precision), so a comparison
    run again, or widened by a seed or a method, scores only what is new."""

    def __init__(
        self, recipe: dict[str, Any], base: TrainConfig, output: Path, log: Callable[[str], None] = print
    ):
        self.recipe, self.base, self.output, self.log = recipe, base, output, log
        self.data = load_data(base, log=log)
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
            _, done = finish_run(config, self.data, log=lambda line: self.log(f"[{name}] {line}"))
            self.log(f"[{name}] {done}")
            self._runs[name] = FinishedRun(name, TrainedRun(self.output / name), self.device)
        return self._runs[name]

    def scored(self, run: FinishedRun, what: str, score: Callable[[list], list[Scores]]) -> list[Scores]:
        """`score(models)` of a run, or what an earlier comparison kept of it under the same key.
        Models are scored as their run evaluated itself (precision and memory format), so that
        the per-query scores average to its own metrics."""
        key = json_fingerprint(
            {
                "what": what,
                "models": run.fingerprints,
                "recipe": result_config(self.base.to_dict()),
                "data": self.task.data_fingerprint(),
                "precision": run.precision,
            }
        )
        path = run.folder.scores_cache(what)
        kept = load_scores(path, key)
        if kept is not None:
            self.log(f"[{run.name}] {what} scores reused from {path.name}")
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
                    return [self.task.ensemble_scores(models)]
                return self.task.item_scores([weight_average(self.task, models)])

            (together,) = self.scored(run, method, together_scores)
            return {"reports": dict.fromkeys(REPORTS, together), "chosen_on": None, "one_value": True}
        run = self.run(method, k, seed)
        each = self.scored(run, "models", self.task.item_scores)
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


@dataclass(frozen=True)
class ComparisonResult:
    """What a comparison found: one row per method and K, and the paired differences."""

    source: str  # the recipe it started from
    keys: tuple[str, ...]  # the metrics compared, the primary first
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    output: Path


def compare(
    recipe: str | Path,
    *,
    seeds: int = 3,
    models: Sequence[int] = (2, 4),
    methods: Sequence[str] = tuple(METHODS),
    output: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> ComparisonResult:
    """Train or reuse every run the comparison needs and pair the methods; the report is
    `report.write_report(result)`'s. ConfigError (one line) for bad arguments or a run folder
    that holds another recipe's run, before any training."""
    if seeds < 1 or any(k < 2 for k in models):
        raise ConfigError(
            "--seeds must be at least 1 and every --models value at least 2 (K = 1 is `single`)"
        )
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    values = load_yaml(recipe)
    base = build_config(values)
    plan = preflight(base)  # names, devices, precision, weights and the data's presence, before any work
    output = Path(output or Path("runs") / f"compare-{Path(str(recipe)).stem}")
    keys = ("top1",) if plan.task == "classification" else ("mAP", "rank1")
    comparison = Comparison(values, base, output, log=log)
    methods = list(dict.fromkeys(methods))
    rows, scores = [], {}
    for k in dict.fromkeys(models):
        for method in methods:
            if method == "single" and any(row["method"] == "single" for row in rows):
                scores[(method, k)] = scores[(method, models[0])]
                continue
            per_seed = [comparison.scores(method, k, seed) for seed in range(seeds)]
            scores[(method, k)] = per_seed
            count = 1 if method == "single" else k
            base_method = "nograft" if METHODS[method] is None else method
            row = {"method": method, "models": count, **summarise(per_seed, keys)}
            row["runs"] = [f"seed{seed}-k{count}-{base_method}" for seed in range(seeds)]
            rows.append(row)
    return ComparisonResult(str(recipe), keys, rows, paired_differences(scores, models, keys), output)


def paired_differences(
    scores: dict[tuple[str, int], list[dict[str, Any]]], models: Sequence[int], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Graft minus each baseline of AGAINST, per K, report and metric, paired by seed and item."""
    paired = []
    for k in dict.fromkeys(models):
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
    return paired


def bootstrap_difference(
    ours: np.ndarray, theirs: np.ndarray, *, rounds: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The mean paired difference of two (seeds x items) score arrays, and its 95% bootstrap
    interval: each round resamples the seeds and, independently, the items (queries or test
    images), both with replacement, and averages ours - theirs over the resampled pairs."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or ours.ndim != 2:
        raise ValueError(
            f"paired scores must have the same (seeds, items) shape, got {ours.shape} and {theirs.shape}"
        )
    difference = ours - theirs
    rng = np.random.default_rng(seed)
    seeds, items = difference.shape
    estimates = np.empty(rounds)
    for r in range(rounds):
        rows = rng.integers(0, seeds, size=seeds)
        columns = rng.integers(0, items, size=items)
        estimates[r] = difference[np.ix_(rows, columns)].mean()
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(difference.mean()), (float(low), float(high))


def save_scores(path: Path, key: str, scores: Sequence[Scores]) -> None:
    """Keep the per-item scores of one or more models at `path` under `key`: what they were
    computed from, so that a later comparison reuses them only then."""
    arrays = {
        f"{position}/{metric}": np.asarray(values, dtype=np.float64)
        for position, model_scores in enumerate(scores)
        for metric, values in model_scores.items()
    }
    write_keyed_arrays(path, f"scores {SCORES_FORMAT}\0{key}", arrays)


def load_scores(path: Path, key: str) -> list[Scores] | None:
    """The scores `save_scores` kept at `path`, or None when there are none to use: no file, one
    written under another key or format, or a damaged one (the models are then scored again)."""
    arrays = read_keyed_arrays(path, f"scores {SCORES_FORMAT}\0{key}")
    if not arrays:
        return None
    scores: dict[int, Scores] = {}
    for name, values in arrays.items():
        position, _, metric = name.partition("/")
        if not position.isdigit() or not metric:
            return None
        scores.setdefault(int(position), {})[metric] = values
    if sorted(scores) != list(range(len(scores))):
        return None
    return [scores[position] for position in range(len(scores))]
