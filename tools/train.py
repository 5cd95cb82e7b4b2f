"""Train K grafted models: the same program as the installed `reidgraft-train` (see
`reidgraft/cli/train.py`, or `python tools/train.py --help`)."""

import sys

from reidgraft.cli.entry import train

if __name__ == "__main__":
    sys.exit(train())
