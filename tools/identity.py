"""Calibrate a run's identity threshold or measure open-set re-entry: the same program as the
installed `reidgraft-identity` (see `reidgraft/cli/identity.py`, or `python tools/identity.py --help`)."""

import sys

from reidgraft.cli.entry import identity

if __name__ == "__main__":
    sys.exit(identity())
