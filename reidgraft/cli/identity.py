"""Persistent identities for trackers: calibrate a run's identity threshold, or measure open-set
re-entry on its test people.

    reidgraft-identity calibrate RUN_DIR [--target 0.01] [--model K] [--root DIR]
    reidgraft-identity reentry RUN_DIR [--target 0.01] [--seeds 5] [--model K] [--root DIR]
                       [--output DIR]

calibrate chooses the lowest cosine threshold at which the run's held-out validation identities,
replayed through an identity memory as people who come and go, get at most TARGET of their
sightings merged with someone else's identity (`reidgraft/identity/calibration.py`), and writes
it to
RUN_DIR/identity-threshold.json, where IdentityMemory's users read it. reentry replays the run's
test people arriving in random orders, half of them returning in the other camera
(`reidgraft/identity/reentry.py`), for the trained model, the same backbone with ImageNet weights
alone and no re-ID; it writes reentry.md, reentry.json and reentry.png (default
RUN_DIR/reentry/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .entry import USER_ERRORS, report_error


def _target(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a rate such as 0.01") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a false-merge rate between 0 and 1, e.g. 0.01 for 1%")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-identity", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("calibrate", "choose and save the run's identity threshold on its validation identities"),
        ("reentry", "measure open-set re-entry on the run's test people"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("run_dir", help="a reidgraft re-ID run folder")
        command.add_argument(
            "--target", type=_target, default=0.01,
            help="the false-merge rate: the share of sightings given someone else's identity (default: 0.01)",
        )  # fmt: skip
        command.add_argument("--model", type=int, help="which of the K models (default: the run's chosen)")
        command.add_argument("--root", help="the data root (default: the run's)")
        if name == "reentry":
            command.add_argument("--seeds", type=int, default=5, help="arrival orders (default: 5)")
            command.add_argument("--output", help="folder for the table and plot (default: RUN_DIR/reentry)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "reentry" and args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds}: give 1 or more arrival orders")
        from ..extractor import FeatureExtractor

        extractor = FeatureExtractor(args.run_dir, model=args.model)
        print(f"model: {extractor!r}")
        if args.command == "calibrate":
            from ..identity.calibration import calibrate_run, save_calibration

            calibration = calibrate_run(extractor, args.target, args.root)
            path = save_calibration(calibration, Path(args.run_dir))
            print(calibration.line())
            print(f"written: {path}")
            return 0
        from ..identity.reentry import reentry_rows, write_reentry

        result = reentry_rows(extractor, args.target, list(range(args.seeds)), args.root)
        written = write_reentry(result, args.output or Path(args.run_dir) / "reentry")
    except USER_ERRORS as error:
        return report_error("identity", error)
    print(written[0].read_text())
    print(f"written: {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    from . import entry

    sys.exit(entry.identity())
