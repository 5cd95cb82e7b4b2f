"""The config's flags: one per field, grouped, with help, default and choices."""

import argparse

import pytest

from reidgraft.config import GROUPS, add_config_arguments, given_fields


def config_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser


def test_help_shows_groups_choices_and_defaults():
    text = config_parser().format_help()
    for group in GROUPS:
        assert f"\n{group}:\n" in text
    assert "--scheduler {step,multistep,cosine,constant}" in text
    assert "(default: step)" in " ".join(text.split())  # the help may wrap anywhere
    assert "(default: ./data or $REIDGRAFT_DATA)" in " ".join(text.split())


def test_given_fields_holds_only_the_flags_given():
    parser = config_parser()
    args = parser.parse_args(["--batch-size", "8", "--no-graft", "--A", "0.3", "--transforms", "random_flip"])
    assert given_fields(args) == {
        "batch_size": 8,
        "population": "none",
        "A": 0.3,
        "transforms": ["random_flip"],
    }
    assert given_fields(parser.parse_args([])) == {}


def test_a_flag_outside_its_choices_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_parser().parse_args(["--optimizer", "rmsprop"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err
