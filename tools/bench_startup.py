"""How long a command takes to reach a one-line error, against one `import torch`.

A user who mistypes a path should hear so at once. The peer is the floor every command pays:
a Python process that imports torch and exits. Both are timed as whole processes, alternating,
so that a busy moment of the machine falls on both alike; the median of each is reported and
their ratio.

    .venv/bin/python tools/bench_startup.py [--pairs 5]

Run it alone on the machine (training or tests beside it skew both sides, unevenly).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], expected_status: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != expected_status:
        raise SystemExit(f"bench_startup: {command} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5, help="alternating pairs to time (default: 5)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as empty:
        # a dataset that is not there: the first thing a new user meets
        error = [
            str(bin_dir / "reidgraft-train"), "--dataset", "market1501", "--root", empty, "--weights", "none",
        ]  # fmt: skip
        peer = [sys.executable, "-c", "import torch"]
        timed(error, 2), timed(peer, 0)  # warm the file cache for both
        errors, peers = [], []
        for _ in range(args.pairs):
            errors.append(timed(error, 2))
            peers.append(timed(peer, 0))
    e, p = statistics.median(errors), statistics.median(peers)
    for what, values, median in (
        ("missing-dataset error", errors, e),
        ("python -c 'import torch'", peers, p),
    ):
        shown = " ".join(f"{value:.2f}" for value in values)
        print(f"{what:<26} median {median:.2f} s of {args.pairs}: {shown}")
    print(f"ratio: {e / p:.2f}x one torch import (goal: 1.8x or less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
