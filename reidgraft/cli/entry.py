"""What the installed commands run: for a CPU run, the mimalloc allocator is preloaded by
re-executing the command (`reidgraft.allocator`) BEFORE the command's module, and with it torch,
is imported, so a command imports torch once; then the command's `main`.

This module imports the standard library and `reidgraft.allocator` (itself standard library
only); the command modules are imported inside each function."""

from __future__ import annotations

import importlib
import signal
import sys
from pathlib import Path

from ..allocator import reexec_with_mimalloc, requested_device

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them


_signalled: list[int] = []  # SIGTERM was received (a handler's exception can be swallowed, as Gradio's)


def _terminate(signum, frame) -> None:
    from ..files import Terminated

    _signalled.append(signum)
    raise Terminated


def terminated() -> bool:
    """Whether this process received SIGTERM."""
    return bool(_signalled)


def interrupt_exit(interrupt: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by Ctrl-C (130) or by SIGTERM (143)."""
    from ..files import Terminated

    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def _run(command: str, allocator: bool) -> int:
    if allocator:
        try:
            reexec_with_mimalloc(requested_device(sys.argv))
        except ValueError as error:
            print(f"{Path(sys.argv[0]).stem}: {error}", file=sys.stderr)
            return 2
    # one signal policy for every command: SIGTERM is handled as Ctrl-C, wherever it lands
    signal.signal(signal.SIGTERM, _terminate)
    from ..files import DiskFull

    try:
        return importlib.import_module(f"reidgraft.cli.{command}").main()
    except DiskFull as full:  # a fault of the machine, not of the input: exit 1, one line
        print(f"{command}: {full}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # (train says more itself: what was saved)
        how = "terminated" if interrupt_exit(interrupt) == EXIT_TERMINATED else "interrupted"
        print(
            f"\n{command}: {how}; temporary files were removed, nothing half-written was kept",
            file=sys.stderr,
        )
        return interrupt_exit(interrupt)


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
