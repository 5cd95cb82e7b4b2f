"""The package as a user installs it: a wheel, installed without -e, outside the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_without_e_trains_the_quick_recipe_outside_the_checkout(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path / "wheel"),
            str(REPOSITORY),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("reidgraft-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reidgraft/recipes/synthetic_quick.yaml" in names
    assert "reidgraft/recipes/base/reid-papers.yaml" in names
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]

    # A small synthetic set already there is used whatever its size (the recipe's default is larger).
    from reidgraft.data.datasets import synthetic_splits

    synthetic_splits(
        tmp_path / "data", train_ids=6, test_ids=4, images_per_id=4, distractors=2, height=32, width=16
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(site), "REIDGRAFT_OFFLINE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import reidgraft, sys; print(reidgraft.__file__)"],
        cwd=outside, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    trained = subprocess.run(
        [
            str(site / "bin" / "reidgraft-train"), "--root", str(tmp_path / "data"), "--models", "2",
            "--epochs", "1", "--batch-size", "8", "--val-ids", "0", "--device", "cpu",
            "--output", str(tmp_path / "run"),
        ],
        cwd=outside, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "optimizer: amsgrad" in config and "scheduler: cosine" in config  # the quick recipe's
    assert (tmp_path / "run" / "metrics.json").is_file()


def _requirements():
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed += extra
    return [Requirement(line) for line in listed]


def _constraints() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPOSITORY / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_dependencies_are_ranges_that_keep_a_trackers_torch():
    """A library pinning torch exactly replaces the torch of the environment it joins."""
    for requirement in _requirements():
        if requirement.name in ("torch", "torchvision"):
            operators = {spec.operator for spec in requirement.specifier}
            assert "==" not in operators and ">=" in operators, requirement


def test_constraints_pin_every_dependency_inside_its_range():
    from packaging.utils import canonicalize_name

    pins = _constraints()
    for requirement in _requirements():
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name == "faiss-gpu":  # the gpu extra, installed without constraints on GPU machines only
            continue
        assert name in pins, f"constraints.txt pins no {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def test_the_environment_is_the_one_constraints_txt_pins():
    """CI installs with -c constraints.txt: what runs the tests is what the file says."""
    from importlib.metadata import version

    pins = _constraints()
    for name in ("torch", "torchvision", "onnxruntime", "numpy", "torchreid"):
        assert version(name).split("+")[0] == pins[name].split("+")[0], name
