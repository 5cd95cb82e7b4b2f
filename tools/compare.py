"""The same program as the installed `reidgraft-compare` (see `reidgraft/cli/compare.py`, or
`python tools/compare.py --help`)."""

import sys

from reidgraft.cli.compare import run

if __name__ == "__main__":
    sys.exit(run())
