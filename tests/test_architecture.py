"""The import rules of the house (docs/architecture.md): arrows point down the layers and never
up, the method imports torch alone, the leaves import nothing of ours, nothing imports the
commands, and what a tracker imports (`reidgraft.FeatureExtractor`) loads no training code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reidgraft"
# Each part of the package, by layer: a part may import its own modules and any part of a lower layer.
LAYERS = {
    "device": 0, "files": 0, "allocator": 0, "images": 0, "progress": 0, "lazy": 0,
    "grafting": 1, "data": 1, "models": 1, "evaluation": 1, "index": 1,
    "population": 2,
    "analysis": 3, "config": 3,
    "engine": 4,
    "extractor": 5,
    "demo": 6, "export": 6, "identity": 6,
    "cli": 7,
    "__init__": 8,
}  # fmt: skip
TRAINING_MODULES = (
    "reidgraft.engine.trainer", "reidgraft.engine.optim", "reidgraft.engine.losses",
    "reidgraft.engine.distributed", "reidgraft.engine.logging", "reidgraft.engine.runs",
    "reidgraft.engine.comparison", "reidgraft.grafting.ring", "reidgraft.grafting.graft",
    "reidgraft.population.graft", "reidgraft.population.dml", "reidgraft.population.papa",
    "reidgraft.population.ema",
    "torch.utils.tensorboard", "tensorboard", "gradio", "faiss",
)  # fmt: skip


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[str]:
    """The modules a file imports, absolute (relative imports resolved), at any depth of the file."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found += [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            else:
                found.append(node.module)
    return found


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_every_part_is_placed_in_a_layer():
    parts = {part_of(module) for _, module in modules()}
    assert parts == set(LAYERS)


def test_imports_point_down_the_layers():
    upward = []
    for path, module in modules():
        own = part_of(module)
        for target in imports(path):
            if target.startswith("reidgraft.") or target == "reidgraft":
                other = part_of(target)
                if other != own and LAYERS[other] >= LAYERS[own]:
                    upward.append(f"{module} imports {target}")
    assert not upward


def test_the_method_imports_torch_alone():
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    for path, module in modules():
        if part_of(module) == "grafting":
            for target in imports(path):
                top = target.split(".")[0]
                assert top in allowed or target.startswith("reidgraft.grafting"), f"{module} imports {target}"


def test_the_population_methods_import_torch_and_grafting_alone():
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    for path, module in modules():
        if part_of(module) == "population":
            for target in imports(path):
                ours = target.startswith(("reidgraft.grafting", "reidgraft.population"))
                assert target.split(".")[0] in allowed or ours, f"{module} imports {target}"


@pytest.mark.parametrize("leaf", ["device", "files", "allocator", "images", "progress", "lazy"])
def test_the_leaves_import_nothing_of_ours(leaf):
    assert not [target for target in imports(PACKAGE / f"{leaf}.py") if target.startswith("reidgraft")]


def test_no_code_edits_the_import_path():
    """reidgraft is installed (pip install -e . for a checkout): no module, tool, script or test
    reaches it by editing sys.path."""
    found = [
        str(path.relative_to(PACKAGE.parent))
        for folder in ("reidgraft", "tools", "scripts", "tests")
        for path in sorted((PACKAGE.parent / folder).rglob("*.py"))
        if "sys.path." in path.read_text() and path.name != "test_architecture.py"
    ] + (["app.py"] if "sys.path." in (PACKAGE.parent / "app.py").read_text() else [])
    assert not found


def test_nothing_imports_the_commands():
    for path, module in modules():
        if part_of(module) != "cli":
            assert not [t for t in imports(path) if t.startswith("reidgraft.cli")], module


def test_the_entry_of_every_command_imports_no_torch():
    """The installed commands start in cli/entry.py, which picks the CPU allocator before torch
    is imported (a re-exec), so that one command imports torch once."""
    program = "import sys, json, reidgraft.cli.entry\nprint(json.dumps(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = json.loads(loaded.stdout)
    assert "torch" not in names and "reidgraft.config" not in names


def test_a_missing_dataset_is_said_before_torch_is_loaded(tmp_path):
    """The commonest first error costs a Python start, not torch's import (tools/bench_startup.py
    times it): the command, the config and the data check load none of torch, torchvision or
    torchreid."""
    program = (
        "import sys, json\n"
        "from reidgraft.cli import train\n"
        f"code = train.main(['--dataset', 'market1501', '--root', {str(tmp_path)!r}, '--weights', 'none'])\n"
        "print(json.dumps([code, sorted(sys.modules)]))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    code, names = json.loads(done.stdout.splitlines()[-1])
    assert code == 2 and "train: dataset not found" in done.stderr
    assert not [name for name in names if name.split(".")[0] in ("torch", "torchvision", "torchreid")]


def test_a_tracker_importing_the_extractor_loads_no_training_code():
    loaded = subprocess.run(
        [
            sys.executable, "-c",
            "import sys, json, reidgraft; from reidgraft import FeatureExtractor; "
            "print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = json.loads(loaded.stdout)
    assert "reidgraft.extractor" in names and "reidgraft.engine.trained" in names  # it did load
    training = [name for name in names if name.startswith(TRAINING_MODULES)]
    assert not training
