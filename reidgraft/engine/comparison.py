"""The comparison behind `reidgraft-compare`: for each seed and each K it trains (or reuses) the
runs of every method, scores their models query by query on the test data (image by image for
classification), builds the compute-matched baselines from K independent models (their feature
ensemble and their weight average), and pairs grafting with each baseline seed by seed.

    single            K = 1 at the base learning rate
    single_long       K = 1 trained K x E epochs, its schedule stretched K-fold (the training
                      compute of K models: the baseline of "train K, keep one")
    nograft           the K models trained independently at the grafted models' learning rates
    nograft_ensemble  those K models together (the task's `ensemble_scores`)
    nograft_average   their weight average, batch-norm statistics re-estimated on training images
    nograft_ema       their EMA copies at the decay chosen on validation (the recipe's ema and
                      ema_grid; those copies ride on nograft's runs only)
    nograft_model_stock  their layer-wise Model Stock average toward the common pretrained start
    graft             the K grafted models
    average           grafted with a fixed alpha of 0.5: averaging without the entropy weighting
    graft_same_lr     grafted, every model at the base learning rate
    dml               deep mutual learning at the grafted models' learning rates (one shared batch)
    papa              PAPA (a pull toward the mean every few steps) at the same learning rates
    papa_average      the papa models' weight average, BN statistics re-estimated (what PAPA returns)
    ema               single's EMA copy (decay EMA_DECAY), BN statistics re-estimated
    teacher           one model per replicate on a seed of its own, for kd and graftplus
    kd                K independent students distilling from the replicate's teacher
    graftplus         grafted students distilling from it (the journal's grafting+)
    (variants)        grafted with other settings (`--variant NAME:FIELD=VALUE,...`)

Each is a `CompareMethod` in COMPARE_METHODS: what its run changes in the recipe (or which
method's run it is built from), one model or K, one run for every K or not, how it is scored
and which contrasts it enters. A new method is one entry (docs/architecture.md).

Each K-model method is reported three ways: model 0 (declared before training), the mean over
its K models, and the best of K (chosen on validation; compare holds out VALIDATION_SHARE of the
training identities when the recipe holds out none, and says so). Model k of replicate s uses
seed 1000 s + k. Per-item scores are kept in each run's folder, so a comparison run again scores
only what is new.

The contrasts are paired by seed (`contrasts`): one is the declared primary endpoint (default
graft minus nograft, each arm's best of K, the task's primary metric, last epoch), inferred with a
t-interval over seeds (`intervals.py`); every other one is exploratory. The report is written
by `report.py`.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import (
    ConfigError,
    TrainConfig,
    build_config,
    checked_value,
    find_recipe,
    load_yaml,
    recipe_label,
    settings_lines,
)
from ..data import ReidSplits
from ..device import resolve_device
from ..files import (
    check_own_outputs,
    json_fingerprint,
    read_keyed_arrays,
    state_fingerprint,
    write_keyed_arrays,
)
from ..population import BN_IMAGES
from ..population import weight_average as population_average
from ..population.averaging import model_stock
from .intervals import holm, infer
from .optim import stretched_schedule
from .preflight import preflight
from .run_dir import RunDir, method_version
from .runs import check_run_folder, finish_run, load_data, result_config
from .tasks import Scores, make_task
from .trained import TrainedRun

SCORES_FORMAT = 1  # the layout of a saved scores file; another one is simply scored again

# The EMA's decay: its mean age is 1 / (1 - decay) = 100 steps, about two epochs of CUHK01's
# four-epoch recipe; set before any run was scored (--ema-decay changes it).
EMA_DECAY = 0.99
REPORTS = ("model0", "mean", "best_of_k")
VALIDATION_SHARE = 0.1  # of the training identities (classification: of the smallest class)
PRIMARY = "graft:best_of_k-nograft:best_of_k"
TEACHER_SEED_OFFSET = 500  # replicate s's teacher trains on seed 1000 s + 500


@dataclass(frozen=True)
class Pairing:
    """The contrasts a method enters: `ours` (default: the method itself) minus `theirs`, one for
    each report in `reports`, theirs taken in the same report or in `theirs_report`. `listed`:
    where they stand among the exploratory contrasts (0: each method against its baselines, in
    method order; 1: grafting against the rivals; 2: the variants)."""

    theirs: str
    reports: tuple[str, ...] = REPORTS
    theirs_report: str | None = None
    ours: str | None = None
    listed: int = 0

    def contrasts(self, method: str) -> list[Contrast]:
        return [
            Contrast(self.ours or method, report, self.theirs, self.theirs_report or report)
            for report in self.reports
        ]


def score_each_model(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """Each model of the run: reported as model 0, the mean over K and the best of K (chosen
    where the run chose it)."""
    each = comparison.scored(run, "models", comparison.task.item_scores)
    best = (run.metrics.get("report") or {}).get("best_of_k") or {"model": 0, "chosen_on": None}
    mean = {key: np.mean([scores[key] for scores in each], axis=0) for key in each[0]}
    reports = {"model0": each[0], "mean": mean, "best_of_k": each[best["model"]]}
    return {"reports": reports, "chosen_on": best["chosen_on"], "one_value": len(each) == 1}


def _one_value(scores: Scores) -> dict[str, Any]:
    return {"reports": dict.fromkeys(REPORTS, scores), "chosen_on": None, "one_value": True}


def score_ema_copy(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """The run's EMA copy, as the run evaluated it (BN statistics re-estimated)."""
    (scores,) = comparison.scored(
        run, name, lambda _: comparison.task.item_scores(run.ema_models()), ema=True
    )
    return _one_value(scores)


def score_ema_grid(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """The K models' EMA copies at the decay (--ema's or one of --ema-grid's) whose copies scored
    best on validation at the last epoch (mean over K of the primary metric): model 0's, the mean
    over K, and the best of K on validation."""
    primary = comparison.task.primary
    last = next((r for r in reversed(run.metrics.get("epochs") or []) if r.get("ema_val_metrics")), None)
    names = run.run.ema_names()
    if last is None or not names:
        raise ValueError(f"{run.folder.path} kept no EMA copies scored on validation (--ema, --val-ids)")

    def validation(copy: str) -> list[float]:
        return [result[primary] for result in last[f"{copy}_val_metrics"]]

    chosen = max(names, key=lambda copy: (statistics.fmean(validation(copy)), copy == "ema"))
    decay = (run.metrics.get(chosen) or {}).get("decay")
    comparison.log(f"[{run.name}] {name}: EMA decay {decay} chosen on validation ({chosen})")
    each = comparison.scored(
        run, f"{name}-{chosen}", lambda _: comparison.task.item_scores(run.ema_models(chosen)), ema=chosen
    )
    best = max(range(len(each)), key=lambda k: (validation(chosen)[k], -k))
    mean = {key: np.mean([scores[key] for scores in each], axis=0) for key in each[0]}
    reports = {"model0": each[0], "mean": mean, "best_of_k": each[best]}
    return {"reports": reports, "chosen_on": "validation", "one_value": len(each) == 1, "decay": decay}


def score_ensemble(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """The run's K models together (the task's `ensemble_scores`)."""
    (scores,) = comparison.scored(run, name, lambda models: [comparison.task.ensemble_scores(models)])
    return _one_value(scores)


def score_model_stock(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """The run's K models merged by Model Stock toward their common pretrained start, layer by
    layer, BN statistics re-estimated (`population.averaging.model_stock`)."""

    def merged(models: list) -> list[Scores]:
        start = pretrained_start(run.run.config, models[0])
        model, _ = model_stock(models, start, comparison.task.bn_images(BN_IMAGES))
        return comparison.task.item_scores([model])

    (scores,) = comparison.scored(run, name, merged)
    return _one_value(scores)


def pretrained_start(config: TrainConfig, like: nn.Module) -> dict[str, torch.Tensor]:
    """The weights every model of a run started from: `like`'s entries that its pretrained file
    fills (the re-ID head, initialised per model, has none). ValueError without pretrained
    weights (plan_comparison refuses that before training)."""
    from ..models import resolve_weights
    from ..models.pretrained import load_pretrained

    source = resolve_weights(config.arch, config.weights, download=False).source
    if source is None:
        raise ValueError(f"weights {config.weights}: the models share no pretrained start")
    start = copy.deepcopy(like).cpu()
    own = load_pretrained(start, source)
    return {key: tensor for key, tensor in start.state_dict().items() if key not in own}


def score_weight_average(comparison: Comparison, name: str, run: FinishedRun) -> dict[str, Any]:
    """The run's K models' weight average, BN statistics re-estimated ("model soup")."""
    (scores,) = comparison.scored(
        run, name, lambda models: comparison.task.item_scores([weight_average(comparison.task, models)])
    )
    return _one_value(scores)


@dataclass(frozen=True)
class CompareMethod:
    """One row of a comparison: how its run differs from the recipe, and how it is scored."""

    changes: Mapping[str, Any] | None = None  # what its run changes in the recipe; None: no run of its own
    derived_from: str | None = None  # the method whose run's models it is built from
    score: Callable[[Comparison, str, FinishedRun], dict[str, Any]] = score_each_model
    one_model: bool = False  # its three reports are one value
    same_for_every_k: bool = False  # one run whatever K (single_long's length depends on K)
    stretched: bool = False  # its schedule stretched K-fold: K x E epochs (`stretched_schedule`)
    default: bool = False  # compared unless --methods says otherwise
    contrasts: tuple[Pairing, ...] = ()  # the exploratory contrasts it enters
    needs_pretrained: bool = False  # built from the models' common pretrained start (model_stock)
    seed_offset: int = 0  # added to the replicate's seed (the teacher's: no study model uses it)
    distils: bool = False  # its models distil from the replicate's `teacher` run
    needs_ema: bool = False  # scored on the EMA copies the recipe keeps (--ema, --ema-grid)


ONE_MODEL_RUN = {"models": 1, "population": "none"}
# The recipe's EMA copies ride only on the runs whose rows score them (nograft's, for nograft_ema):
# the copies change no training, and each costs an update per step and a scoring per evaluation.
EMA_FIELDS = ("ema", "ema_grid", "ema_warmup")
AGAINST_NOGRAFT = (Pairing("nograft"),)
COMPARE_METHODS: dict[str, CompareMethod] = {
    "single": CompareMethod(ONE_MODEL_RUN, one_model=True, same_for_every_k=True, default=True),
    "single_long": CompareMethod(ONE_MODEL_RUN, one_model=True, stretched=True, default=True),
    "nograft": CompareMethod({"population": "none"}, default=True),
    "nograft_ensemble": CompareMethod(derived_from="nograft", score=score_ensemble, default=True),
    "nograft_average": CompareMethod(derived_from="nograft", score=score_weight_average, default=True),
    # nograft's EMA copies at the decay chosen on validation (the recipe keeps them: --ema and
    # --ema-grid; keeping them changes no training)
    "nograft_ema": CompareMethod(
        derived_from="nograft", score=score_ema_grid, needs_ema=True, contrasts=AGAINST_NOGRAFT
    ),
    "nograft_model_stock": CompareMethod(  # Model Stock (Jang et al., ECCV 2024), post hoc
        derived_from="nograft",
        score=score_model_stock,
        needs_pretrained=True,
        contrasts=(Pairing("nograft_average", ("model0",)),),
    ),
    "graft": CompareMethod(
        {"population": "graft"},
        default=True,
        contrasts=(
            *(Pairing(theirs) for theirs in ("nograft", "nograft_ensemble", "nograft_average", "single")),
            Pairing("nograft_model_stock"),
            Pairing("single_long", theirs_report="model0"),
        ),
    ),
    "graft_same_lr": CompareMethod(  # same seed, rate and data order as single
        {"population": "graft", "lr_spread": "none"},
        default=True,
        contrasts=(Pairing("single", ("model0",)),),
    ),
    # the population rivals (three runs more per seed): against the same baseline, then grafting
    "dml": CompareMethod(
        {"population": "dml"},
        contrasts=(*AGAINST_NOGRAFT, Pairing("dml", ("best_of_k",), ours="graft", listed=1)),
    ),
    "papa": CompareMethod(
        {"population": "papa"},
        contrasts=(*AGAINST_NOGRAFT, Pairing("papa", ("best_of_k",), ours="graft", listed=1)),
    ),
    "papa_average": CompareMethod(
        derived_from="papa",
        score=score_weight_average,
        contrasts=(Pairing("nograft_average", ("model0",)), Pairing("single", ("model0",))),
    ),
    "ema": CompareMethod(  # the same run's model and its EMA copy
        {**ONE_MODEL_RUN, "ema": EMA_DECAY},
        score=score_ema_copy,
        one_model=True,
        same_for_every_k=True,
        contrasts=(Pairing("single", ("model0",)),),
    ),
    # distillation (the journal's grafting+): a teacher trained per replicate, on a seed of its own;
    # students distil from it alone (kd) or while grafting (graftplus)
    "teacher": CompareMethod(
        ONE_MODEL_RUN, one_model=True, same_for_every_k=True, seed_offset=TEACHER_SEED_OFFSET
    ),
    "kd": CompareMethod({"population": "none"}, distils=True, contrasts=AGAINST_NOGRAFT),
    "graftplus": CompareMethod(
        {"population": "graft"}, distils=True, contrasts=(Pairing("kd"), Pairing("graft"))
    ),
    # grafting without its entropy weighting: the K models averaged (alpha 0.5) at the same
    # epoch ends, everything else as graft's run (at K = 2 both models leave each graft equal)
    "average": CompareMethod(
        {"population": "graft", "criterion": "fixed", "fixed_alpha": 0.5},
        contrasts=(*AGAINST_NOGRAFT, Pairing("average", ("mean", "best_of_k"), ours="graft", listed=1)),
    ),
}
DEFAULT_METHODS = tuple(name for name, method in COMPARE_METHODS.items() if method.default)


def variant_method(changes: Mapping[str, Any]) -> CompareMethod:
    """A grafted method with other settings (`--variant`), paired against nograft."""
    return CompareMethod({"population": "graft", **changes}, contrasts=(Pairing("nograft", listed=2),))


def method_table(
    variants: Mapping[str, Mapping[str, Any]], ema_decay: float = EMA_DECAY
) -> dict[str, CompareMethod]:
    """Every method a comparison may run: the registered ones, an EMA at `ema_decay`, then the
    variants."""
    table = {
        name: replace(method, changes={**method.changes, "ema": ema_decay})
        if method.changes is not None and "ema" in method.changes
        else method
        for name, method in COMPARE_METHODS.items()
    }
    return table | {name: variant_method(changes) for name, changes in variants.items()}


REPORT_FILES = ("comparison.md", "comparison.json", "comparison.png", "comparison-curves.png")


def holds_runs(folder: Path) -> bool:
    """Whether `folder` holds reidgraft runs (a comparison's folder from before outputs were
    recorded: its report files are reidgraft's)."""
    return any(RunDir(child).is_ours() for child in Path(folder).glob("seed*-k*-*"))


def check_report_folder(folder: Path) -> None:
    """ValueError (one line) before any training when the report would overwrite a user's file."""
    if Path(folder).is_dir():
        check_own_outputs(folder, REPORT_FILES, "--output", ours=holds_runs(folder))


def replicate_seed(replicate: int) -> int:
    """The run seed of replicate s: its model k uses seed 1000 * s + k (the trainer adds k), so
    no two replicates share an initialisation or a data order for K up to 1000."""
    return 1000 * replicate


def weight_average(task, models: Sequence[nn.Module]) -> nn.Module:
    """One model whose weights are the K models' mean ("model soup"), with its batch-norm
    statistics re-estimated on up to BN_IMAGES training images (unaugmented, in list order):
    averaged running statistics do not describe the averaged weights' activations."""
    return population_average(models, task.bn_images(BN_IMAGES))


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

    def ema_fingerprints(self, name: str = "ema") -> list[str]:
        return [state_fingerprint(self.run.ema_state(k, name)) for k in range(self.run.count)]

    def ema_models(self, name: str = "ema") -> list:
        """The run's EMA copies `name`, as it evaluated them (statistics re-estimated)."""
        return [
            self.run.model(k, self.device, self.precision["channels_last"], ema=name)
            for k in range(self.run.count)
        ]


class Comparison:
    """The runs of one comparison and their per-item scores, trained or reused on demand. Scores
    are kept in each run's folder (`RunDir.scores_cache`) under a key of everything they depend
    on (the models' weights, the scoring recipe, the test data, the precision), so a comparison
    run again, or widened by a seed or a method, scores only what is new."""

    def __init__(
        self,
        recipe: dict[str, Any],
        base: TrainConfig,
        output: Path,
        log: Callable[[str], None] = print,
        variants: dict[str, dict[str, Any]] | None = None,
        data: Any = None,
        ema_decay: float = EMA_DECAY,
    ):
        self.recipe, self.base, self.output, self.log = recipe, base, output, log
        self.methods = method_table(variants or {}, ema_decay)
        self.data = data if data is not None else load_data(base, log=log)
        self.task = make_task(base, self.data)  # scores on its test data (validation held out)
        self.device = resolve_device(base.device)
        self._runs: dict[str, FinishedRun] = {}
        # the runs that keep the recipe's EMA copies (--ema, --ema-grid): those a row scores them on
        self.ema_runs = {spec.derived_from for spec in self.methods.values() if spec.needs_ema}

    def changes(self, method: str, k: int, seed: int) -> dict[str, Any]:
        """What the run of `method` for K = k and replicate `seed` changes in the recipe."""
        spec = self.methods[method]
        changes = {"models": k, **spec.changes, "seed": replicate_seed(seed) + spec.seed_offset}
        if spec.stretched:
            changes |= stretched_schedule(self.base, k)
        if spec.distils:  # the replicate's teacher, by the absolute path of its run's checkpoint
            teacher = self.output.resolve() / self.run_name("teacher", k, seed) / "checkpoint.pt"
            changes["teacher"] = [f"{teacher}:0"]
        return changes

    def run_name(self, method: str, k: int, seed: int) -> str:
        """single and ema are one run whatever K; single_long is K x E epochs, so one per K."""
        return f"seed{seed}-k{1 if self.methods[method].same_for_every_k else k}-{method}"

    def run_method(self, method: str) -> str:
        """The method whose run `method` is scored on (its own, or the one it is derived from)."""
        return self.methods[method].derived_from or method

    def config(self, method: str, k: int, seed: int) -> TrainConfig:
        """The resolved config of the run of `method` for K = k and replicate `seed`."""
        name = self.run_name(method, k, seed)
        recipe = self.recipe
        if "ema" in self.methods[method].changes or method not in self.ema_runs:  # (a row's own, or none)
            recipe = {field: value for field, value in recipe.items() if field not in EMA_FIELDS}
        return build_config(recipe, **self.changes(method, k, seed), output=str(self.output / name))

    def check_folders(self, planned: Sequence[tuple[str, int, int]]) -> None:
        """Every planned run's folder may be trained, reused or resumed (`check_run_folder`):
        another recipe's run, other data's or an older method's is found before any training."""
        for method, k, seed in planned:
            if self.methods[self.run_method(method)].distils:  # its teacher's folder too
                check_run_folder(self.config("teacher", k, seed), self.data)
            check_run_folder(self.config(self.run_method(method), k, seed), self.data)

    def run(self, method: str, k: int, seed: int) -> FinishedRun:
        """A run of `method` (trained, resumed or reused)."""
        name = self.run_name(method, k, seed)
        if name not in self._runs:
            if self.methods[method].distils:  # its teacher first
                self.run("teacher", k, seed)
            config = self.config(method, k, seed)
            self.log(f"[{name}] {method}, K = {config.models}, seed {seed}, {config.epochs} epochs")
            _, done = finish_run(
                config, self.data, log=lambda line: self.log(f"[{name}] {line}"), label=f"[{name}] "
            )
            self.log(f"[{name}] {done}")
            self._runs[name] = FinishedRun(name, TrainedRun(self.output / name), self.device)
        return self._runs[name]

    def scored(
        self, run: FinishedRun, what: str, score: Callable[[list], list[Scores]], *, ema: bool | str = False
    ) -> list[Scores]:
        """`score(models)` of a run, or what an earlier comparison kept of it under the same key.
        Models are scored as their run evaluated itself (precision and memory format), so that
        the per-query scores average to its own metrics."""
        key = json_fingerprint(
            {
                "what": what,
                "models": run.ema_fingerprints("ema" if ema is True else ema) if ema else run.fingerprints,
                "recipe": result_config(self.base.to_dict()),
                "data": self.task.data_fingerprint(),
                "precision": run.precision,
                "method_version": method_version(run.metrics),
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
        run = self.run(self.run_method(method), k, seed)
        return self.methods[method].score(self, method, run)


def chosen_on(per_seed: list[dict[str, Any]]) -> str | None:
    """Where every seed's best of K was chosen, when they agree (None: they do not, or nowhere)."""
    places = {seed["chosen_on"] for seed in per_seed} - {None}
    return places.pop() if len(places) == 1 else None


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
    row["best_of_k"]["chosen_on"] = chosen_on(per_seed)
    row["one_value"] = per_seed[0]["one_value"]
    return row


@dataclass(frozen=True)
class Contrast:
    """One paired difference: `ours` (its `ours_report`) minus `theirs` (its `theirs_report`),
    seed by seed on the same test items. A one-model method's reports are all the same value."""

    ours: str
    ours_report: str
    theirs: str
    theirs_report: str

    @property
    def name(self) -> str:
        return f"{self.ours}:{self.ours_report}-{self.theirs}:{self.theirs_report}"

    def label(self, one_value: Callable[[str], bool]) -> str:
        """`graft (best_of_k) - nograft (best_of_k)`, a one-model side without its report."""
        sides = [
            method if one_value(method) else f"{method} ({report})"
            for method, report in ((self.ours, self.ours_report), (self.theirs, self.theirs_report))
        ]
        return " − ".join(sides)


def parse_contrast(text: str, methods: Sequence[str], flag: str = "--primary") -> Contrast:
    """`OURS[:REPORT]-THEIRS[:REPORT]` (REPORT default best_of_k) as a Contrast of two of
    `methods`; ConfigError (one line) naming what is wrong."""
    sides = text.split("-")
    parsed = []
    for side in sides if len(sides) == 2 else []:
        method, _, report = side.strip().partition(":")
        parsed.append((method, report or "best_of_k"))
    if len(parsed) != 2:
        raise ConfigError(
            f"{flag} {text!r}: write OURS[:REPORT]-THEIRS[:REPORT], e.g. {PRIMARY} (reports: "
            f"{', '.join(REPORTS)})"
        )
    for method, report in parsed:
        if method not in methods:
            raise ConfigError(
                f"{flag} {text!r}: {method!r} is not among the compared methods ({', '.join(methods)}); "
                "add it to --methods or --variant"
            )
        if report not in REPORTS:
            raise ConfigError(f"{flag} {text!r}: unknown report {report!r}; choose from {', '.join(REPORTS)}")
    if parsed[0][0] == parsed[1][0]:
        raise ConfigError(f"{flag} {text!r}: a method against itself tells nothing; name two methods")
    (ours, ours_report), (theirs, theirs_report) = parsed
    return Contrast(ours, ours_report, theirs, theirs_report)


VARIANT_GROUPS = ("grafting", "optimisation")  # what a variant may change: how models are trained
NOT_VARIED = ("models", "population")  # K comes from --models; a variant is grafted


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME:FIELD=VALUE[,FIELD=VALUE...]` (values in YAML; a value may hold commas, as in
    milestones=[40,70]) as (name, changes): a grafted method trained with those settings.
    Only grafting and optimisation fields may change: every run is trained on the same data and
    scored by the same evaluation. ConfigError (one line) for a bad name, field or value."""
    import re

    import yaml

    from ..config import FIELDS, checked_value, load_yaml_text

    name, _, settings = text.partition(":")
    # split at the commas that start another FIELD=, not at those inside a value
    pairs = [pair.partition("=") for pair in re.split(r",\s*(?=[A-Za-z_]+=)", settings) if pair.strip()]
    if not name.isidentifier() or not name.islower() or not pairs or any(not sep for _, sep, _ in pairs):
        raise ConfigError(
            f"--variant {text!r}: write NAME:FIELD=VALUE[,FIELD=VALUE], e.g. graft_c5:c=5 (NAME in "
            "lower case letters, digits and _)"
        )
    if name in COMPARE_METHODS:
        raise ConfigError(f"--variant {text!r}: {name!r} is a built-in method; name the variant otherwise")
    changes = {}
    for field_name, _, value in pairs:
        field_name = field_name.strip()
        group = FIELDS[field_name].metadata.get("group") if field_name in FIELDS else None
        if group not in VARIANT_GROUPS or field_name in NOT_VARIED:
            raise ConfigError(
                f"--variant {text!r}: {field_name!r} is not a setting a variant may change (a "
                f"grafting or optimisation field other than {' and '.join(NOT_VARIED)}: every run "
                "shares the data and the evaluation)"
            )
        if not value.strip():
            raise ConfigError(f"--variant {text!r}: {field_name} has no value; write {field_name}=VALUE")
        try:
            changes[field_name] = checked_value(field_name, load_yaml_text(value))
        except (ConfigError, yaml.YAMLError) as error:
            raise ConfigError(f"--variant {text!r}: {str(error).splitlines()[0]}") from None
    return name, changes


@dataclass(frozen=True)
class ComparisonResult:
    """What a comparison found: one row per method and K, and the paired contrasts (the primary
    endpoint's entries first)."""

    source: str  # the recipe it started from
    keys: tuple[str, ...]  # the metrics compared, the primary first
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    output: Path
    primary: Contrast = Contrast("graft", "best_of_k", "nograft", "best_of_k")
    validation: str = ""  # where best of K was chosen, in words
    seeds: int = 0
    secondary: tuple[str, ...] = ()  # the declared secondary endpoints (--secondary), in order


def default_validation(base: TrainConfig, data: Any) -> int:
    """How much to hold out when the recipe holds out nothing: VALIDATION_SHARE of the training
    identities (classification: of the smallest class's images), at least 2 (1 image)."""
    if isinstance(data, ReidSplits):
        return max(2, round(VALIDATION_SHARE * data.num_train_pids))
    smallest = int(np.bincount(data.train_labels, minlength=data.num_classes).min())
    return max(1, round(VALIDATION_SHARE * smallest))


@dataclass
class ComparisonPlan:
    """What a comparison will do, checked before any training: the recipe every run starts from
    (`values`, with the validation hold-out), its methods, the K and seeds, the primary contrast,
    and the `Comparison` that trains, reuses and scores the runs."""

    source: str
    comparison: Comparison
    methods: list[str]
    variants: list[str]
    models: list[int]
    seeds: int
    primary: Contrast
    keys: tuple[str, ...]
    validation: str  # where best of K is chosen, in words
    secondary: tuple[Contrast, ...] = ()  # declared before the run: Holm's family
    seeds_of: Mapping[str, int] = field(default_factory=dict)  # methods on fewer seeds (--seeds-of)

    def seeds_for(self, method: str) -> int:
        """How many replicates `method` runs: its --seeds-of count, else the count of the method
        it is derived from, else --seeds; never more than --seeds."""
        source = self.comparison.methods[method].derived_from
        default = self.seeds_for(source) if source in self.methods else self.seeds
        return min(self.seeds, self.seeds_of.get(method, default))


def compare(
    recipe: str | Path,
    *,
    seeds: int = 5,
    models: Sequence[int] = (2, 4),
    methods: Sequence[str] = DEFAULT_METHODS,
    output: str | Path | None = None,
    primary: str = PRIMARY,
    variants: Sequence[str] = (),
    val_ids: int | None = None,
    ema_decay: float = EMA_DECAY,
    overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    secondary: Sequence[str] = (),
    seeds_of: Mapping[str, int] | Sequence[str] = (),
) -> ComparisonResult:
    """Train or reuse every run the comparison needs and pair the methods; the report is
    `report.write_report(result)`'s. ConfigError (one line) for bad arguments, a run folder that
    holds another recipe's run, other data or an older method's, before any training.
    `val_ids`: identities (classification: images per class) to hold out for choosing the best
    of K (over what the recipe holds out); None: the recipe's, or VALIDATION_SHARE of them when it
    holds out none; 0: none (chosen on the test set, and labelled so). `overrides`: recipe fields
    set for every run (compare's --root, --dataset, --height, --width, --workers). `secondary`:
    contrasts declared before the run, reported in their order and Holm-adjusted as one family
    (without them, the family is every exploratory contrast on the primary metric). `seeds_of`:
    methods run on fewer replicates ({method: N} or "METHOD=N" texts; at most `seeds`), a method
    derived from another taking its count; each contrast pairs the seeds both sides have."""
    plan = plan_comparison(
        recipe, seeds=seeds, models=models, methods=methods, output=output, primary=primary,
        variants=variants, val_ids=val_ids, ema_decay=ema_decay, overrides=overrides, log=log,
        secondary=secondary, seeds_of=seeds_of,
    )  # fmt: skip
    rows, scores = run_comparison(plan)
    return report_comparison(plan, rows, scores)


def plan_comparison(
    recipe: str | Path,
    *,
    seeds: int,
    models: Sequence[int],
    methods: Sequence[str],
    output: str | Path | None,
    primary: str,
    variants: Sequence[str],
    val_ids: int | None,
    ema_decay: float,
    overrides: Mapping[str, Any] | None,
    log: Callable[[str], None],
    secondary: Sequence[str] = (),
    seeds_of: Mapping[str, int] | Sequence[str] = (),
) -> ComparisonPlan:
    """Everything a comparison checks before it trains: its arguments, the recipe and the
    variants' settings (preflight), the data, the hold-out, that every method's run can be built,
    and that no run folder or report file in the way is someone else's."""
    _check_arguments(seeds, models, methods, ema_decay, val_ids)
    extra = parse_variants(variants)
    methods = list(dict.fromkeys([*methods, *extra]))
    fewer = parse_seeds_of(seeds_of, methods)
    contrast = parse_contrast(primary, methods)
    declared = tuple(parse_contrast(text, methods, "--secondary") for text in secondary)
    for text, parsed in zip(secondary, declared, strict=True):
        if parsed == contrast or declared.count(parsed) > 1:
            raise ConfigError(f"--secondary {text}: declared twice, or as the primary endpoint too")
    values = recipe_values = load_yaml(recipe)
    overrides = {name: checked_value(name, value) for name, value in (overrides or {}).items()}
    values = {**values, **overrides}
    base = build_config(values)
    log(f"compare: recipe: {recipe_label(find_recipe(recipe))}")
    for line in settings_lines(base, recipe_values, overrides):
        log(f"compare: {line} (every run; each method changes its own)")
    checked = preflight(base)  # names, devices, precision, weights and the data's presence, before any work
    task = checked.task
    for method in methods:  # what a method needs of the recipe, before any training
        spec = COMPARE_METHODS.get(method)
        if spec is not None and spec.needs_ema and base.ema is None:
            raise ConfigError(
                f"{method} scores the EMA copies the runs keep, and the recipe keeps none: set ema (and "
                f"ema_grid, ema_warmup) in the recipe, or leave {method} out of --methods"
            )
        needs_start = spec is not None and spec.needs_pretrained
        if needs_start and checked.weights.source is None:
            raise ConfigError(
                f"{method} merges the models toward their common pretrained start, and the recipe's "
                f"models start from {checked.weights.description}: set weights: imagenet in the recipe, "
                f"or leave {method} out of --methods"
            )
    for changes in extra.values():  # a variant's settings too (a teacher file, say)
        preflight(build_config(values, **changes), data=False)
    output = Path(output or Path("runs") / f"compare-{Path(str(recipe)).stem}")
    keys = ("top1",) if task == "classification" else ("mAP", "rank1")
    data = load_data(base, log=log)
    held, validation = _hold_out(base, data, val_ids, task)
    needs_validation = [m for m in methods if m in COMPARE_METHODS and COMPARE_METHODS[m].needs_ema]
    if needs_validation and not held:
        raise ConfigError(
            f"{needs_validation[0]} chooses its EMA decay on validation, and --val-ids 0 holds none out; "
            "hold some out (--val-ids N), or leave it out of --methods"
        )
    log(f"compare: best of K chosen on {validation}")
    if held != base.val_ids:  # the task holds them out of the training data (tasks.py)
        values = {**values, "val_ids": held}
        base = build_config(values)
    comparison = Comparison(values, base, output, log=log, variants=extra, data=data, ema_decay=ema_decay)
    if base.ema is not None:
        keep = ", ".join(sorted(comparison.ema_runs))
        scorers = ", ".join(name for name, spec in comparison.methods.items() if spec.needs_ema)
        log(
            f"compare: the recipe's EMA copies are kept in the runs of {keep} only (the runs {scorers} "
            "scores, whether or not it is compared: a run's settings never depend on the rows asked "
            "for); the other runs train the same without them"
        )
    for method in methods:  # a rival's run must be possible with this recipe (K >= 2 and so on)
        if comparison.methods[method].changes is not None:
            build_config(values, **{"models": max(models), **comparison.methods[method].changes})
    models = list(dict.fromkeys(models))
    plan = ComparisonPlan(
        str(recipe), comparison, methods, list(extra), models, seeds, contrast, keys, validation, declared,
        fewer,
    )  # fmt: skip
    for method in methods:
        if plan.seeds_for(method) < seeds:
            log(f"compare: {method} on seeds 0-{plan.seeds_for(method) - 1} of 0-{seeds - 1} (--seeds-of)")
    comparison.check_folders(
        [(m, k, seed) for k in models for m in methods for seed in range(plan.seeds_for(m))]
    )
    check_report_folder(output)  # and a user's file where the report goes
    return plan


def _check_arguments(
    seeds: int, models: Sequence[int], methods: Sequence[str], ema_decay: float, val_ids: int | None
) -> None:
    if seeds < 1 or any(k < 2 for k in models):
        raise ConfigError(
            "--seeds must be at least 1 and every --models value at least 2 (K = 1 is `single`)"
        )
    unknown = [method for method in methods if method not in COMPARE_METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(COMPARE_METHODS)}")
    if not 0 <= ema_decay < 1:
        raise ConfigError(f"--ema-decay {ema_decay}: give a decay in [0, 1), e.g. {EMA_DECAY}")
    if val_ids is not None and val_ids < 0:
        raise ConfigError(f"--val-ids {val_ids}: give 0 (choose on the test set) or more")


def parse_seeds_of(given: Mapping[str, int] | Sequence[str], methods: Sequence[str]) -> dict[str, int]:
    """--seeds-of as {method: N}: each a method being compared, N a whole number of at least 1
    (more than --seeds means --seeds). ConfigError (one line) otherwise."""
    if isinstance(given, Mapping):
        pairs = list(given.items())
    else:
        pairs = [text.partition("=")[::2] for text in given]
    counts: dict[str, int] = {}
    for method, count in pairs:
        shown = f"--seeds-of {method}={count}"
        if method not in methods:
            raise ConfigError(f"{shown}: {method!r} is not among the methods compared ({', '.join(methods)})")
        if method in counts:
            raise ConfigError(f"{shown}: {method} was given a count already")
        text = str(count).strip()
        if isinstance(count, bool) or not text.isascii() or not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{shown}: give METHOD=N, N a whole number of seeds, 1 or more (e.g. papa=3)")
        counts[method] = int(text)
    return counts


def parse_variants(texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Every `--variant` as {name: changes}; a name given twice is refused."""
    extra: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, changes = parse_variant(text)
        if name in extra:
            raise ConfigError(f"--variant {text!r}: a variant named {name!r} was given already")
        extra[name] = changes
    return extra


def _hold_out(base: TrainConfig, data: Any, val_ids: int | None, task: str) -> tuple[int, str]:
    """How much validation to hold out for choosing the best of K, and where it comes from, in
    words."""
    if val_ids is not None:
        held, source = val_ids, "--val-ids"
    elif base.val_ids:
        held, source = base.val_ids, "the recipe's"
    else:
        held, source = default_validation(base, data), "compare's default"
    if not held:
        return held, "the test set (--val-ids 0: no validation held out)"
    unit = "training images per class" if task == "classification" else "training identities"
    total = "" if task == "classification" else f" of {data.num_train_pids}"
    return held, f"validation: {held}{total} {unit} held out ({source})"


def run_comparison(plan: ComparisonPlan) -> tuple[list[dict[str, Any]], dict[tuple[str, int], list]]:
    """Train or reuse every planned run and score it: one row per method and K (mean and spread
    over seeds), and the per-seed scores the contrasts pair."""
    comparison, rows, scores = plan.comparison, [], {}
    for k in plan.models:
        for method in plan.methods:
            spec = comparison.methods[method]
            if spec.same_for_every_k and any(row["method"] == method for row in rows):
                scores[(method, k)] = scores[(method, plan.models[0])]
                continue
            per_seed = [comparison.scores(method, k, seed) for seed in range(plan.seeds_for(method))]
            scores[(method, k)] = per_seed
            row = {"method": method, "models": 1 if spec.one_model else k, **summarise(per_seed, plan.keys)}
            if spec.derived_from:  # built from another method's runs (their curves are its)
                row["derived_from"] = spec.derived_from
            if any("decay" in seed for seed in per_seed):  # (nograft_ema: chosen on validation)
                row["decays"] = [seed.get("decay") for seed in per_seed]
            row["runs"] = [
                comparison.run_name(comparison.run_method(method), k, seed)
                for seed in range(plan.seeds_for(method))
            ]
            rows.append(row)
    return rows, scores


def report_comparison(
    plan: ComparisonPlan, rows: list[dict[str, Any]], scores: dict[tuple[str, int], list]
) -> ComparisonResult:
    """The rows and the paired contrasts (the primary endpoint's first)."""
    paired = contrasts(scores, plan.models, plan.keys, plan.primary, plan.variants, plan.secondary)
    output = plan.comparison.output
    return ComparisonResult(
        plan.source,
        plan.keys,
        rows,
        paired,
        output,
        plan.primary,
        plan.validation,
        plan.seeds,
        tuple(c.name for c in plan.secondary),
    )


def exploratory_contrasts(present: Callable[[str], bool], variants: Sequence[str]) -> list[Contrast]:
    """Every contrast worth reading beside the primary one, among the methods present: what each
    method's spec pairs it with, in the order their `listed` says."""
    table = method_table(dict.fromkeys(variants, {}))
    found = [
        (pairing.listed, contrast)
        for method, spec in table.items()
        for pairing in spec.contrasts
        for contrast in pairing.contrasts(method)
    ]
    found.sort(key=lambda entry: entry[0])  # (stable: method order within each place)
    return [c for _, c in found if present(c.ours) and present(c.theirs)]


def contrasts(
    scores: dict[tuple[str, int], list[dict[str, Any]]],
    models: Sequence[int],
    keys: tuple[str, ...],
    primary: Contrast,
    variants: Sequence[str] = (),
    secondary: Sequence[Contrast] = (),
) -> list[dict[str, Any]]:
    """Every contrast per K and metric, paired by seed and item: the primary endpoint's entry
    (primary metric) first for each K, marked `primary`; then the declared `secondary` ones in
    their order, marked `secondary`; then the exploratory ones. Each entry: the per-seed
    differences, their mean, the t-interval over seeds, its t-test's p and what the seeds could
    detect (`intervals.infer`), the bootstrap interval (labelled by what it resamples), and where
    each best of K was chosen. On the primary metric, Holm's adjustment over one family per K
    (`p_holm`, `holm_family`): the declared secondaries when there are any, else every
    exploratory contrast; the primary endpoint is tested alone."""
    paired = []
    for k in dict.fromkeys(models):

        def present(method: str, k: int = k) -> bool:
            return (method, k) in scores

        one_value = {m: scores[(m, k)][0]["one_value"] for m, _ in scores if (m, k) in scores}
        wanted = [(primary, keys[0], True)] if present(primary.ours) and present(primary.theirs) else []
        wanted += [(primary, key, False) for key in keys[1:] if wanted]
        declared = [c for c in secondary if present(c.ours) and present(c.theirs)]
        wanted += [(contrast, key, False) for contrast in declared for key in keys]
        wanted += [
            (contrast, key, False)
            for contrast in exploratory_contrasts(present, variants)
            if contrast != primary and contrast not in declared
            for key in keys
        ]
        first = len(paired)
        for contrast, key, is_primary in wanted:
            # paired over the seeds both sides have (replicates 0..n-1: --seeds-of runs the first n)
            shared = min(len(scores[(contrast.ours, k)]), len(scores[(contrast.theirs, k)]))
            ours, theirs = (
                np.stack([seed["reports"][report][key] for seed in scores[(method, k)][:shared]])
                for method, report in (
                    (contrast.ours, contrast.ours_report),
                    (contrast.theirs, contrast.theirs_report),
                )
            )
            inference = infer((ours - theirs).mean(axis=1))
            difference, (low, high) = bootstrap_difference(ours, theirs)
            entry = {
                "models": k, "contrast": contrast.name, "label": contrast.label(one_value.__getitem__),
                "ours": contrast.ours, "ours_report": contrast.ours_report, "theirs": contrast.theirs,
                "theirs_report": contrast.theirs_report, "metric": key, "primary": is_primary,
                "difference": difference, "seeds": shared, **inference.to_dict(),
                "bootstrap95": [low, high],
                "bootstrap_resamples": "queries" if len(ours) == 1 else "queries and seeds",
            }  # fmt: skip
            if is_primary:
                entry["verdict"] = inference.verdict(
                    "grafting" if (contrast.ours, contrast.theirs) == ("graft", "nograft")
                    else f"{contrast.ours} against {contrast.theirs}"
                )  # fmt: skip
            sides = ((contrast.ours, contrast.ours_report), (contrast.theirs, contrast.theirs_report))
            chosen = {
                method: chosen_on(scores[(method, k)][:shared])
                for method, report in sides
                if report == "best_of_k" and not one_value[method]
            }
            if chosen:
                entry["chosen_on"] = chosen
            if contrast in declared:
                entry["secondary"] = True
            paired.append(entry)
        family = [
            entry
            for entry in paired[first:]
            if entry["metric"] == keys[0]
            and not entry["primary"]
            and (entry.get("secondary") or not declared)
        ]
        name = f"{'declared secondaries' if declared else 'exploratory'}, {len(family)} contrasts"
        for entry, adjusted in zip(family, holm([entry["p"] for entry in family]), strict=True):
            entry["p_holm"], entry["holm_family"] = adjusted, name
    return paired


def bootstrap_difference(
    ours: np.ndarray, theirs: np.ndarray, *, rounds: int = 2000, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """The mean paired difference of two (seeds x items) score arrays, and its 95% bootstrap
    interval: each round resamples the seeds and, independently, the items (queries or test
    images), both with replacement, and averages ours - theirs over the resampled pairs. With one
    seed it resamples the items alone. The report's secondary interval: with few seeds it is too
    narrow when seed-to-seed variation dominates (docs/evaluation.md)."""
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
    kept = [scores[position] for position in range(len(scores))]
    # every model with the same metrics, each one score per item in [0, 1], all of one length
    lengths = {values.shape for model in kept for values in model.values()}
    if len({frozenset(model) for model in kept}) != 1 or len(lengths) != 1 or len(next(iter(lengths))) != 1:
        return None
    if not all(
        np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all() for model in kept for v in model.values()
    ):
        return None
    return kept
