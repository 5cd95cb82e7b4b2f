"""The config's fields as command-line flags: one `--flag` per field, grouped as the schema
groups them, each with its help text, default and choices from the field's metadata."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .schema import FIELDS, GROUP_DESCRIPTIONS, GROUPS, TrainConfig


def _shown(name: str, value: Any) -> str:
    """A default as the help text shows it."""
    if name == "root":  # the value depends on the environment of whoever reads the help
        return "./data or $REIDGRAFT_DATA"
    if value is None or value == []:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one `--flag` per config field to `parser`, in one argument group per entry of GROUPS.

    Every flag defaults to None, so `given_fields` can tell which were given. The defaults the
    help shows are the dataclass's: a recipe's values override these defaults and flags override both.
    """
    defaults = TrainConfig()
    for group in GROUPS:
        arguments = parser.add_argument_group(group, GROUP_DESCRIPTIONS[group])
        for f in dataclasses.fields(TrainConfig):
            if f.metadata["group"] != group:
                continue
            default = getattr(defaults, f.name)
            help = f.metadata["help"]
            if f.name != "output":  # its help already says how its default is made
                help += f" (default: {_shown(f.name, default)})"
            options: dict[str, Any] = {"dest": f.name, "default": None, "help": help.replace("%", "%%")}
            if isinstance(default, bool) or f.metadata.get("kind") == "bool":
                options["action"] = argparse.BooleanOptionalAction
            elif isinstance(default, list):
                options["nargs"] = "+"
                if default and isinstance(default[0], int):
                    options["type"] = int
                elif f.metadata.get("kind") == "float_list":
                    options["type"] = float
            elif isinstance(default, int | float):
                options["type"] = type(default)
            elif f.metadata.get("kind") == "float":
                options["type"] = float
            if "choices" in f.metadata:
                options["choices"] = f.metadata["choices"]
            arguments.add_argument("--" + f.name.replace("_", "-"), **options)

    # the former switches, kept working (outside the groups: they are no fields of their own)
    parser.add_argument(
        "--graft",
        "--no-graft",
        dest="population",
        action=_GraftSwitch,
        nargs=0,
        default=None,
        help="--no-graft is --population none, --graft is --population graft, their former "
        "spelling (default: off)",
    )
    parser.add_argument(
        "--no-diverse-lr", dest="lr_spread", action="store_const", const="none", default=None,
        help="the same as --lr-spread none, its former name (default: off)",
    )  # fmt: skip


class _GraftSwitch(argparse.Action):
    """--graft / --no-graft as the population they name."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, "none" if option_string == "--no-graft" else "graft")


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """{field: value} for every config flag that was given on the command line."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
