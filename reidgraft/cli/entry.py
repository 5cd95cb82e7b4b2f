"""What the installed commands run: for a CPU run, the mimalloc allocator is preloaded by
re-executing the command (`reidgraft.allocator`) BEFORE the command's module, and with it torch,
is imported, so a command imports torch once; then the command's `main`.

This module imports the standard library and `reidgraft.allocator` (itself standard library
only); the command modules are imported inside each function."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ..allocator import reexec_with_mimalloc, requested_device


def _run(command: str, allocator: bool) -> int:
    if allocator:
        try:
            reexec_with_mimalloc(requested_device(sys.argv))
        except ValueError as error:
            print(f"{Path(sys.argv[0]).stem}: {error}", file=sys.stderr)
            return 2
    return importlib.import_module(f"reidgraft.cli.{command}").main()


def train() -> int:
    return _run("train", allocator=True)


def evaluate() -> int:
    return _run("evaluate", allocator=True)


def compare() -> int:
    return _run("compare", allocator=True)


def analyze() -> int:
    return _run("analyze", allocator=False)


def demo() -> int:
    return _run("demo", allocator=False)


def export() -> int:
    return _run("export", allocator=False)
