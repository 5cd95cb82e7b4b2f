"""The same program as the installed `reidgraft-compare` (see `reidgraft/cli/compare.py`, or
`python tools/compare.py --help`)."""

import sys

from reidgraft.cli.entry import compare

if __name__ == "__main__":
    sys.exit(compare())
