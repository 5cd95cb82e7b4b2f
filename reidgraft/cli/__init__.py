"""The command-line programs, installed as `reidgraft-train`, `reidgraft-evaluate`,
`reidgraft-analyze`, `reidgraft-compare`, `reidgraft-demo` and `reidgraft-export` (and run as
`python tools/X.py`). Each module parses its arguments, calls one function of the package, and
turns a user's mistake into one line on stderr with exit code 2; `entry.py` is what the installed
commands run first. Imports nothing, so that `entry` starts without torch."""
