"""The command-line programs, installed as `reidgraft-train`, `reidgraft-evaluate`,
`reidgraft-analyze`, `reidgraft-compare` and `reidgraft-demo` (and run as `python tools/X.py`).
Each parses its arguments, lets the package do the work, and turns a user's mistake into one
line on stderr with exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ..allocator import reexec_with_mimalloc, requested_device


def with_cpu_allocator(main: Callable[[], int]) -> int:
    """Run `main` as an installed command: a CPU run first gets the mimalloc allocator (see
    `reidgraft.allocator`; REIDGRAFT_ALLOCATOR=system opts out)."""
    try:
        reexec_with_mimalloc(requested_device(sys.argv))
    except ValueError as error:
        print(f"{Path(sys.argv[0]).stem}: {error}", file=sys.stderr)
        return 2
    return main()
