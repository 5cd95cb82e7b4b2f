"""Every command explains itself: each option has a help text that states its default, the
training flags come from the config's metadata (grouped as the config is), and the installed
commands and the `python tools/X.py` wrappers run the same programs."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reidgraft.cli import analyze, compare, demo, evaluate, export, train
from reidgraft.config import FIELDS, GROUPS

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {
    "train": train, "evaluate": evaluate, "analyze": analyze, "compare": compare, "demo": demo,
    "export": export,
}  # fmt: skip


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_a_help_text_with_its_default(name):
    for action in options(COMMANDS[name].build_parser()):
        assert action.help and len(action.help) > 10, f"{name}: {action.option_strings or action.dest}"
        has_default = action.default not in (None, False) or (name == "train" and action.dest in FIELDS)
        if has_default and action.option_strings:
            assert "default" in action.help, f"{name} {action.option_strings[0]}: {action.help}"


def test_train_flags_are_the_config_fields_in_their_groups():
    parser = train.build_parser()
    groups = {group.title: group for group in parser._action_groups}
    assert set(GROUPS) <= set(groups)
    flags = {}
    for title in GROUPS:
        for action in groups[title]._group_actions:
            flags[action.dest] = title
            assert FIELDS[action.dest].metadata["group"] == title
            assert action.option_strings[0] == "--" + action.dest.replace("_", "-")  # the YAML key
    assert set(flags) == set(FIELDS)
    choices = {action.dest: action.choices for action in options(parser) if action.choices}
    for name in ("scheduler", "optimizer", "criterion", "device", "metric"):
        assert tuple(choices[name]) == tuple(FIELDS[name].metadata["choices"])


def test_help_text_reaches_the_user_and_bad_choices_exit_2():
    wide = {**os.environ, "COLUMNS": "300"}  # one line per option
    shown = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--help"],
        capture_output=True, text=True, timeout=120, env=wide,
    )  # fmt: skip
    assert shown.returncode == 0
    assert "--scheduler {step,multistep,cosine,constant}" in shown.stdout
    assert "(default: step)" in shown.stdout
    assert "grafting:" in shown.stdout and "optimisation:" in shown.stdout
    bad = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train.py"), "--optimizer", "rmsprop"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "invalid choice: 'rmsprop'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_installed_commands_and_wrappers_are_the_same_program(name):
    installed = Path(sys.executable).parent / f"reidgraft-{name}"
    wrapper = REPO / ("app.py" if name == "demo" else f"tools/{name}.py")
    assert installed.is_file(), f"{installed} is not installed; pip install -e . makes it"
    texts = [
        subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=120).stdout
        for command in ([str(installed)], [sys.executable, str(wrapper)])
    ]
    assert texts[0] == texts[1] and f"usage: reidgraft-{name}" in texts[0]
    assert "sys.path" not in wrapper.read_text()


@pytest.mark.parametrize("name", COMMANDS)
def test_the_umbrella_command_runs_each_command(name):
    umbrella = Path(sys.executable).parent / "reidgraft"
    assert umbrella.is_file(), f"{umbrella} is not installed; pip install -e . makes it"
    texts = [
        subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=120).stdout
        for command in ([str(umbrella), name], [str(Path(sys.executable).parent / f"reidgraft-{name}")])
    ]
    assert texts[0] == texts[1] and f"usage: reidgraft-{name}" in texts[0]


def test_version_and_unknown_commands():
    from importlib.metadata import version

    bin_dir = Path(sys.executable).parent
    for command, expected in [
        ([str(bin_dir / "reidgraft"), "--version"], f"reidgraft {version('reidgraft')}\n"),
        (
            [str(bin_dir / "reidgraft-export"), "--version"],
            f"reidgraft-export (reidgraft {version('reidgraft')})\n",
        ),
    ]:
        shown = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0 and shown.stdout == expected, shown.stderr
    unknown = subprocess.run(
        [str(bin_dir / "reidgraft"), "trian"], capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == (
        "reidgraft: unknown command 'trian'; choose one of: train, evaluate, compare, analyze, demo, export, "
        "identity\n"
    )
    bare = subprocess.run([str(bin_dir / "reidgraft")], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and "usage: reidgraft {train," in bare.stderr


def test_the_demo_takes_the_run_folder_as_every_command_does():
    assert demo.parse_args(["runs/a"]).checkpoint == "runs/a"
    assert demo.parse_args(["--checkpoint", "runs/a"]).checkpoint == "runs/a"  # the older spelling
    assert demo.parse_args([]).checkpoint is None
    with pytest.raises(SystemExit) as stopped:
        demo.parse_args(["runs/a", "--checkpoint", "runs/b"])
    assert stopped.value.code == 2
