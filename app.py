"""The gallery-search demo: the same program as the installed `reidgraft-demo` (see
`reidgraft/cli/demo.py`, or `python app.py --help`)."""

import sys

from reidgraft.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
