"""Evaluate a run's models on re-ID query and gallery: the same program as the installed
`reidgraft-evaluate` (see `reidgraft/cli/evaluate.py`, or `python tools/evaluate.py --help`)."""

import sys

from reidgraft.cli.entry import evaluate

if __name__ == "__main__":
    sys.exit(evaluate())
