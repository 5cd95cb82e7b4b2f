"""A faster memory allocator for CPU training: mimalloc, preloaded by re-executing the command.

glibc's malloc serves large blocks (a training step's activation buffers) with mmap and returns
them on free, so every step faults the same pages in again; mimalloc keeps and reuses them.
On the project's 2-core CPU this made training steps much faster (docs/performance.md has the
numbers, from tools/bench_train.py run with and without it). An allocator is chosen before the
process starts, so a CLI that wants it runs itself again once with LD_PRELOAD set, as Intel's CPU
launchers do. The library ships in the PyPI package cmeel-mimalloc (a dependency on Linux).

Opt out with REIDGRAFT_ALLOCATOR=system (or when the library is missing, or off Linux). GPU runs
are left alone: their big buffers live in CUDA's own allocator.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VARIABLE = "REIDGRAFT_ALLOCATOR"  # "mimalloc" (the default for CPU runs) or "system"
ACTIVE = "REIDGRAFT_ALLOCATOR_ACTIVE"  # set in the re-executed process: never loop


def mimalloc_library() -> Path | None:
    """The mimalloc shared library of the installed cmeel-mimalloc, if any."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("cmeel-mimalloc")
    except metadata.PackageNotFoundError:
        return None
    for name in ("cmeel.prefix/lib/libmimalloc.so", "cmeel.prefix/lib64/libmimalloc.so"):
        path = Path(distribution.locate_file(name))
        if path.is_file():
            return path
    return None


def mimalloc_loaded() -> bool:
    """Whether this process runs with mimalloc (it shows among the mapped libraries)."""
    try:
        return "libmimalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def wants_cuda(device: str | None) -> bool:
    """Whether a run asking for `device` will use a GPU (without importing torch to find out)."""
    return device == "cuda" or (device in (None, "auto") and Path("/dev/nvidiactl").exists())


def requested_device(argv: list[str]) -> str | None:
    """The value of a `--device` flag in a command line, if any."""
    for index, word in enumerate(argv):
        if word == "--device" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--device="):
            return word.split("=", 1)[1]
    return None


def reexec_with_mimalloc(device: str | None) -> None:
    """Run this command again with mimalloc preloaded, once, for a CPU run on Linux; return
    (and carry on with the system allocator) when it does not apply."""
    choice = os.environ.get(VARIABLE, "mimalloc")
    if choice not in ("mimalloc", "system"):
        raise ValueError(f"{VARIABLE}={choice!r}: choose mimalloc or system")
    linux = sys.platform.startswith("linux")
    if choice == "system" or os.environ.get(ACTIVE) or not linux or wants_cuda(device):
        return
    library = mimalloc_library()
    if library is None:
        return
    environment = dict(os.environ)
    environment[ACTIVE] = "1"
    environment["LD_PRELOAD"] = " ".join(filter(None, [str(library), environment.get("LD_PRELOAD")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
