"""Export a run's model to ONNX or TorchScript with a parity check: the same program as the
installed `reidgraft-export` (see `reidgraft/cli/export.py`, or `python tools/export.py --help`)."""

import sys

from reidgraft.cli.entry import export

if __name__ == "__main__":
    sys.exit(export())
