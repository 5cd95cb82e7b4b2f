"""The command-line programs, installed as `reidgraft-train`, `reidgraft-evaluate`,
`reidgraft-analyze`, `reidgraft-compare` and `reidgraft-demo` (and run as `python tools/X.py`).
Each parses its arguments, lets the package do the work, and turns a user's mistake into one
line on stderr with exit code 2."""
