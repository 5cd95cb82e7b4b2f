"""The same program as the installed `reidgraft-analyze` (see `reidgraft/cli/analyze.py`, or
`python tools/analyze.py --help`)."""

import sys

from reidgraft.cli.entry import analyze

if __name__ == "__main__":
    sys.exit(analyze())
