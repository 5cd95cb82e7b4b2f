"""The population methods by name, and the companions any of them may have (EMA copies): each
spec holds everything the rest of reidgraft needs to know about its method before it is built
(how many models it needs, whether it runs one model per process under torchrun, whether its
models share one batch, how a run names and describes it), and where its participant is built.

Adding a method: one module of this package with `build(models, config, group)` returning its
`Participant` (participant.py), one entry below, and its settings in the config's schema, each
with `method=` its name (docs/architecture.md, "Add a population method").

This module imports no torch: the config reads it to check a run before anything is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


def _module(name: str):
    return importlib.import_module(name if "." in name else f"{__package__}.{name}")


class _Fields(dict):
    """A config's fields by name, for str.format_map."""

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def __missing__(self, name: str) -> Any:
        return getattr(self.config, name)


@dataclass(frozen=True)
class _Spec:
    """What a population method and a companion share: where the participant is built, and how
    a run names it."""

    module: str  # its module (in this package, or dotted): `build(models, config, group)` makes it
    label: str  # how a run describes it: "grafted", "PAPA {papa_mode}" (config fields in braces)
    distributed: bool = True  # may run one model per process under torchrun

    builder: str = "build"  # the module's function that makes it

    def build(self, models: list, config: Any, group: Any):
        """The participant over this process's `models` (or a list of participants)."""
        return getattr(_module(self.module), self.builder)(models, config, group)

    def describe(self, config: Any) -> str:
        return self.label.format_map(_Fields(config))


@dataclass(frozen=True)
class PopulationSpec(_Spec):
    """What K models trained side by side exchange (`--population NAME`)."""

    help: str = ""  # a few words for --population's help
    min_models: int = 1
    shared_batch: bool = False  # every model steps on the same batch (model 0's, read once)
    run_suffix: str | None = None  # after k<K> in a default run folder's name; None: "-<name>"


@dataclass(frozen=True)
class CompanionSpec(_Spec):
    """A participant beside the population method, on when its config field is set (EMA)."""

    field: str = ""  # the config field that switches it on (set: not None, not empty)

    def active(self, config: Any) -> bool:
        return getattr(config, self.field) not in (None, [])


POPULATIONS: dict[str, PopulationSpec] = {
    "none": PopulationSpec("independent", "independent", help="independent models", run_suffix="-nograft"),
    "graft": PopulationSpec(
        "graft", "grafted", help="a ring graft at every epoch end, the papers'", run_suffix=""
    ),
    "dml": PopulationSpec(
        "dml",
        "mutual learning",
        help="deep mutual learning: a KL term to the peers' predictions on the same batch every step",
        min_models=2,
        distributed=False,  # every model's logits, every step: a collective per step
        shared_batch=True,
    ),
    "papa": PopulationSpec(
        "papa",
        "PAPA {papa_mode}",
        help="population parameter averaging",
        min_models=2,
        distributed=False,  # the population's mean every few steps: a collective per pull
    ),
}

COMPANIONS: dict[str, CompanionSpec] = {
    # evaluated (BN statistics re-estimated) in one process beside the models
    "ema": CompanionSpec("ema", "EMA {ema:g}", field="ema", distributed=False),
    "ema_grid": CompanionSpec(
        "ema", "EMA also at {ema_grid}", field="ema_grid", distributed=False, builder="build_grid"
    ),
}


def population_help() -> str:
    """--population's help, from the specs."""
    methods = ", ".join(f"{name} ({spec.help})" for name, spec in POPULATIONS.items())
    return f"what the K models exchange: {methods}; --no-graft is --population none"


def active_specs(config: Any) -> list[tuple[str, PopulationSpec | CompanionSpec]]:
    """(flag, spec) of the run's population method and of each companion it switches on."""
    found: list[tuple[str, PopulationSpec | CompanionSpec]] = [
        (f"--population {config.population}", POPULATIONS[config.population])
    ]
    return found + [(f"--{spec.field}", spec) for spec in COMPANIONS.values() if spec.active(config)]


def build_participants(models: list, config: Any, group: Any) -> list:
    """The run's participants, in the order the trainer calls them: the population method, then
    each companion (an EMA copy averages the weights the method left)."""
    built = [spec.build(models, config, group) for _, spec in active_specs(config)]
    return [one for entry in built for one in (entry if isinstance(entry, list) else [entry])]


def describe_run(config: Any) -> str:
    """`grafted`, `PAPA gradual, EMA 0.99`; `baseline` for one model."""
    parts = [POPULATIONS[config.population].describe(config) if config.models > 1 else "baseline"]
    return ", ".join(parts + [spec.describe(config) for spec in COMPANIONS.values() if spec.active(config)])


def run_suffix(config: Any) -> str:
    """What a default run folder's name says of the method ("" for one model)."""
    if config.models == 1:
        return ""
    spec = POPULATIONS[config.population]
    return f"-{config.population}" if spec.run_suffix is None else spec.run_suffix
