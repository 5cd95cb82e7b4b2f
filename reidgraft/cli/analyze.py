"""Filter analysis of a training run, optionally against a baseline run: invalid-filter ratios,
layer and network entropy, invalid-filter IoU between neighbouring models, and the average L1
of valid and invalid filters (split taken from the baseline), with plots.

    reidgraft-analyze RUN_DIR [--baseline RUN_DIR] [--output DIR] [--split-thresholds 0.1 1]

Writes into DIR (default: RUN_DIR/analysis): analysis.json, invalid_ratio.png, entropy.png,
iou.png; prints a summary table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..analysis.report import analyse, plot, summary_lines
from ..engine.run_dir import RunDir
from ..engine.trained import TrainedRun
from ..files import atomic_write_json, check_writable
from .entry import USER_ERRORS, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a reidgraft run folder (or its checkpoint.pt)")
    parser.add_argument(
        "--baseline", metavar="RUN_DIR", help="a run of the same architecture to compare with"
    )
    parser.add_argument("--output", help="folder for analysis.json and the plots (default: RUN_DIR/analysis)")
    parser.add_argument(
        "--split-thresholds", type=float, nargs="+", default=[0.1, 1.0],
        help="L1 thresholds that split the baseline's filters into valid and invalid "
        "(journal Table 8; default: 0.1 1)",
    )  # fmt: skip
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def load_models(run_dir: str | Path, label: str) -> tuple[dict, dict]:
    """{name: state} for every model of a run, and its config (weights only: no model is built)."""
    run = TrainedRun(run_dir)
    return {f"{label}{k}": run.state(k) for k in range(run.count)}, run.raw_config


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        bad = [t for t in args.split_thresholds if not (math.isfinite(t) and t > 0)]
        if bad:
            raise ValueError(f"--split-thresholds must be positive finite L1 norms, got {bad[0]}")
        models, config = load_models(args.run_dir, "model")
        baselines = {}
        if args.baseline:
            baselines, baseline_config = load_models(args.baseline, "baseline")
            if baseline_config["arch"] != config["arch"]:
                raise ValueError(
                    f"the baseline trained {baseline_config['arch']}, the run {config['arch']}; "
                    "compare runs of one architecture"
                )
        output = Path(args.output) if args.output else RunDir(args.run_dir).path / "analysis"
        check_writable(output)
        report = analyse(models, baselines, args.split_thresholds)
        report["run"], report["baseline"] = str(args.run_dir), args.baseline
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output / "analysis.json", report)
        pictures = plot(report, output)
    except USER_ERRORS as error:
        return report_error("analyze", error)
    for line in summary_lines(report):
        print(line)
    print(f"written: {output / 'analysis.json'}, " + ", ".join(path.name for path in pictures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
