"""The gallery-search demo: the same program as the installed `reidgraft-demo` (see
`reidgraft/cli/demo.py`, or `python app.py --help`)."""

import sys

from reidgraft.cli.entry import demo

if __name__ == "__main__":
    sys.exit(demo())
