"""Recipes: YAML files of config values, shipped inside the package (`reidgraft/recipes/`, read
with importlib.resources, so an installed wheel has them) or written by a user. A recipe may
start from another with `base: PATH` (relative to the recipe's own folder): the base's values
first, then the recipe's own; bases may have bases, and a cycle is refused.

A config is resolved as: the schema's defaults, then the recipe with its bases, then flags.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..data.registry import DEFAULT_DATASET, dataset_spec
from .checks import check_config
from .schema import FIELDS, RENAMED, ConfigError, TrainConfig, shown

RECIPES: Traversable = importlib.resources.files("reidgraft") / "recipes"
SUFFIX = ".yaml"
BASE_KEY = "base"

Source = Path | Traversable


def shipped_recipes() -> list[str]:
    """The names of the recipes shipped with reidgraft (their bases, in `base/`, not included)."""
    return sorted(
        entry.name.removesuffix(SUFFIX)
        for entry in RECIPES.iterdir()
        if entry.is_file() and entry.name.endswith(SUFFIX)
    )


def shipped_recipe(name: str) -> Traversable:
    """The shipped recipe `name` (with or without `.yaml`); ConfigError listing them otherwise."""
    stem = name.removesuffix(SUFFIX)
    if stem not in shipped_recipes():
        raise ConfigError(f"no shipped recipe {name!r}; choose one of: {', '.join(shipped_recipes())}")
    return RECIPES / f"{stem}{SUFFIX}"


def find_recipe(value: str | Source) -> Source:
    """What `--config VALUE` names: a YAML file, else a shipped recipe of that name."""
    if not isinstance(value, str | Path):
        return value  # a Traversable already (a shipped recipe)
    path = Path(value)
    if path.is_file():
        return path
    stem = path.name.removesuffix(SUFFIX)
    if len(path.parts) == 1 and stem in shipped_recipes():
        return shipped_recipe(stem)
    raise ConfigError(
        f"config file not found: {value}; give a YAML file or a shipped recipe "
        f"({', '.join(shipped_recipes())})"
    )


def recipe_for(dataset: str | None, arch: str | None) -> Traversable:
    """The recipe a run starts from when no --config is given: the dataset's recipe for `arch`
    (the dataset's default arch's when `arch` has none), from the dataset registry; the synthetic
    dataset's when no dataset is named. An unknown dataset is an error, never a silent fallback."""
    return recipe_choice(dataset, arch)[0]


def recipe_choice(dataset: str | None, arch: str | None) -> tuple[Traversable, str | None]:
    """`recipe_for`'s recipe and, when `arch` has no recipe of its own for the dataset, a note
    saying whose settings it gets instead (said at the start of a run, never silent)."""
    try:
        spec = dataset_spec(dataset or DEFAULT_DATASET)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    name = spec.recipe(arch)
    note = None
    if arch and arch not in spec.recipes:
        note = (
            f"no {spec.name} recipe is shipped for {arch}: its settings are {spec.default_arch}'s "
            f"({name.removesuffix(SUFFIX)}), with arch {arch}; pass --config to choose"
        )
    return shipped_recipe(name), note


@dataclass(frozen=True)
class Resolved:
    """A new run's settings and where they came from: the recipe taken (and a note when it is
    another arch's), the recipe's values with its bases, and the settings given over them."""

    config: TrainConfig
    recipe: Source
    note: str | None
    recipe_values: dict[str, Any]
    given: dict[str, Any]

    def lines(self) -> list[str]:
        """What a run says first: the recipe, then the settings that differ from the defaults."""
        head = [f"recipe: {recipe_label(self.recipe)}"] + ([f"note: {self.note}"] if self.note else [])
        return head + settings_lines(self.config, self.recipe_values, self.given)


def resolve_config(recipe: str | Path | None = None, **settings: Any) -> Resolved:
    """A new run's config as `reidgraft-train` resolves it: the schema's defaults, then `recipe`
    (a shipped recipe's name or a YAML file; None: the one registered for `dataset` and `arch`),
    then `settings` (config fields, checked as flags are; None values are ignored). A re-ID run
    that names no initial weights starts from ImageNet's. ConfigError (one line) for a bad name,
    field or value."""
    import os

    from ..models import IMAGENET  # (the models' registry, read only here)
    from .checks import check_method_settings

    given = {
        name: os.fspath(value) if isinstance(value, os.PathLike) else value  # (root=Path(...) too)
        for name, value in _renamed(dict(settings)).items()
        if value is not None
    }
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: {', '.join(FIELDS)}")
    given = {name: checked_value(name, value) for name, value in given.items()}
    if recipe is not None:
        source, note = find_recipe(recipe), None
    else:
        source, note = recipe_choice(given.get("dataset"), given.get("arch"))
    recipe_values = load_yaml(source)
    config = build_config(recipe_values, **given)
    check_method_settings(config, given)
    if config.weights is None and dataset_spec(config.dataset).task == "reid":
        config.weights = IMAGENET  # what re-ID users expect when neither recipe nor flag says
    return Resolved(config, source, note, recipe_values, given)


def recipe_label(recipe: Source | None) -> str:
    """How a run's console names its recipe: a shipped one by name, a file by its path."""
    if recipe is None:
        return "none"
    shipped = str(getattr(recipe, "parent", "")) == str(RECIPES)  # (a Path when installed as files)
    if isinstance(recipe, Path) and not shipped:
        return str(recipe)
    return f"{recipe.name.removesuffix(SUFFIX)} (shipped: reidgraft/recipes/{recipe.name})"


def settings_lines(config: TrainConfig, recipe_values: dict[str, Any], flags: dict[str, Any]) -> list[str]:
    """The resolved settings that differ from the schema's defaults, by where each came from:
    the recipe (with its bases) or a flag. `output` is left to the line naming the run."""
    defaults = TrainConfig()
    sources: dict[str, list[str]] = {"flags": [], "the recipe": [], "reidgraft": []}
    for name in FIELDS:
        value = getattr(config, name)
        if name == "output" or value == getattr(defaults, name):
            continue
        source = "flags" if name in flags else "the recipe" if name in recipe_values else "reidgraft"
        plain = (
            str(value).lower()
            if isinstance(value, bool)
            else value
            if isinstance(value, str)
            else shown(value)
        )
        sources[source].append(f"{name}={plain}")
    lines = [f"settings from {where}: {', '.join(items)}" for where, items in sources.items() if items]
    return lines or ["settings: all at their defaults"]


class AliasRefused(yaml.YAMLError):
    """A YAML alias (`*name`) was met; the message says where."""


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader with aliases refused: nine nested `&a [*a, ...]` lines make a few
    hundred bytes that expand into gigabytes (an alias bomb)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(f"*{event.anchor} at line {event.start_mark.line + 1}")
        return super().compose_node(parent, index)


def load_yaml_text(text: str) -> Any:
    """YAML text parsed as `yaml.safe_load` does, aliases refused (`AliasRefused`)."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml(recipe: str | Source) -> dict[str, Any]:
    """A recipe's values with those of its bases; unknown keys are errors (a typo would otherwise
    be silently ignored)."""
    source = find_recipe(recipe)
    return _load(source, _folder_of(source), ())


def _folder_of(source: Source) -> Source:
    if isinstance(source, Path):
        return source.parent
    return RECIPES  # shipped recipes sit at the top of RECIPES


def _load(source: Source, folder: Source, chain: tuple[str, ...]) -> dict[str, Any]:
    name = str(source)
    if name in chain:
        raise ConfigError(f"recipe {chain[-1]} has a cycle of bases: {' -> '.join((*chain, name))}")
    if not source.is_file():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {name}{where}")
    try:
        data = load_yaml_text(source.read_text()) or {}
    except AliasRefused as error:
        raise ConfigError(
            f"config file {name} uses a YAML alias ({error}); write the value out: aliases are "
            "refused, since a few of them can expand a small file into gigabytes"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {name} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {name} must hold a mapping of field: value")
    base = data.pop(BASE_KEY, None)
    unknown = sorted(set(data) - set(FIELDS) - set(RENAMED))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r} in {name}; valid fields: {', '.join(FIELDS)}")
    values = _renamed(
        {key: checked_value(key, value) if key in FIELDS else value for key, value in data.items()}
    )
    if base is None:
        return values
    base_source, base_folder = _base(base, name, folder)
    return {**_load(base_source, base_folder, (*chain, name)), **values}


def _base(base: Any, name: str, folder: Source) -> tuple[Source, Source]:
    """Where `base: VALUE` of recipe `name` (in `folder`) points, and the folder its own bases are
    relative to: a YAML file (absolute, or relative to the recipe's folder), or else a shipped
    recipe's name, as --config takes it (`base: cuhk01_mobilenetv2`)."""
    stem = base.removesuffix(SUFFIX) if isinstance(base, str) else ""
    shipped = isinstance(base, str) and "/" not in base and stem in shipped_recipes()
    if isinstance(base, str) and base.endswith(SUFFIX):
        if Path(base).is_absolute():
            return Path(base), Path(base).parent
        parts = PurePosixPath(base).parts
        base_folder = folder.joinpath(*parts[:-1]) if len(parts) > 1 else folder
        source = base_folder.joinpath(parts[-1])
        if source.is_file() or not shipped:  # (a missing file is named by _load)
            return source, base_folder
    if not shipped:
        raise ConfigError(
            f"{BASE_KEY} in {name} must be the path of a {SUFFIX} file or a shipped recipe's name (one of: "
            f"{', '.join(shipped_recipes())}), got {shown(base)}"
        )
    return RECIPES / f"{stem}{SUFFIX}", RECIPES


def checked_value(name: str, value: Any) -> Any:
    """Check a YAML value against the field's type (YAML already parsed numbers and booleans)."""
    default = getattr(TrainConfig(), name)
    if FIELDS[name].metadata.get("kind") == "float":  # unset by default, a number when set
        default = 0.0
    if value is not None and FIELDS[name].metadata.get("kind") == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {shown(value)}")
    if value is None:
        return value
    if default is None and "kind" not in FIELDS[name].metadata:  # output, weights, devices: text
        if name == "devices" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {shown(value)}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {shown(value)}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {shown(value)}")
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {shown(value)}")
        value = float(value)
    elif FIELDS[name].metadata.get("kind") == "float_list":  # (empty by default: no element to copy)
        value = [value] if isinstance(value, int | float | str) and not isinstance(value, bool) else value
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list of numbers, got {shown(value)}")
        numbers = []
        for v in value:
            try:
                numbers.append(float(v) if not isinstance(v, bool) else None)
            except (TypeError, ValueError):
                numbers.append(None)
        if None in numbers:
            raise ConfigError(f"{name} must be a list of numbers, got {shown(value)}")
        value = numbers
    elif isinstance(default, list) and default and isinstance(default[0], int):
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{name} must be a list of integers, got {shown(value)}")
    elif isinstance(default, list):
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {shown(value)}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {shown(value)}")
    return value


def current_names(values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `values` (a recipe, or a config a run saved) with former field names (RENAMED)
    under their new names."""
    return _renamed(dict(values))


def _renamed(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with former field names (RENAMED) under their new names."""
    for old, (new, mapping) in RENAMED.items():
        if old in values:
            value = values.pop(old)
            if value is not None and (not isinstance(value, bool) or value not in mapping):
                raise ConfigError(f"{old} must be true or false, got {shown(value)} (its new name is {new})")
            if value is not None:
                values.setdefault(new, mapping[value])
    return values


def build_config(base: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then `base` (a recipe), then `overrides` whose value is not None; checked."""
    values, overrides = _renamed(dict(base or {})), _renamed(overrides)
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown field {unknown[0]!r}; valid fields: {', '.join(FIELDS)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return check_config(TrainConfig(**values))
