"""An honest comparison of grafting with the baselines it must beat, in the shape of the papers'
Table 8: one declared primary endpoint with a t-interval over seeds and a verdict, then every
other contrast, labelled exploratory (`reidgraft/engine/comparison.py` says what each method is
and how they are paired).

    reidgraft-compare --config RECIPE [--seeds 5] [--seeds-of METHOD=N ...] [--models 2 4]
                      [--methods ...] [--output DIR]
                      [--primary graft:best_of_k-nograft:best_of_k] [--variant NAME:FIELD=VALUE]
                      [--val-ids N] [--root DIR] [--dataset NAME] [--height H --width W] [--workers N]
                      [--split SHARE] [--split-seed N]

Writes DIR/comparison.md, comparison.json and comparison.png (default DIR:
runs/compare-<recipe name>). Each run's per-item scores are kept in its folder, so a comparison
run again scores only what is new.
"""

from __future__ import annotations

import argparse
import sys

from ..engine.comparison import COMPARE_METHODS, DEFAULT_METHODS, EMA_DECAY, PRIMARY, compare
from ..engine.report import write_report
from .entry import USER_ERRORS, report_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidgraft-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        required=True,
        help="the recipe every run starts from: a YAML file or a shipped recipe's name",
    )
    parser.add_argument(
        "--seeds", type=int, default=5,
        help="replicates 0..N-1 (default: 5; with fewer the t-interval is called rough)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds-of", nargs="+", default=[], metavar="METHOD=N",
        help="methods run on fewer replicates, 0..N-1 (e.g. papa=3 dml=3: rivals on 3 of 6 seeds); "
        "a method derived from another's runs takes that one's count; each contrast pairs the seeds "
        "both sides have (default: every method on --seeds)",
    )  # fmt: skip
    parser.add_argument(
        "--models", type=int, nargs="+", default=[2, 4], help="the K to compare, 2 or more (default: 2 4)"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=list(COMPARE_METHODS), default=list(DEFAULT_METHODS),
        help="the rows to produce; the rivals (dml, papa, papa_average, ema, average, kd, graftplus, "
        "teacher, nograft_ema, nograft_model_stock) are asked for by name "
        f"(default: {' '.join(DEFAULT_METHODS)})",
    )  # fmt: skip
    parser.add_argument(
        "--ema-decay", type=float, default=EMA_DECAY,
        help=f"the decay of method ema's weight average (default: {EMA_DECAY})",
    )  # fmt: skip
    parser.add_argument(
        "--primary", default=PRIMARY,
        help="the declared primary endpoint, OURS[:REPORT]-THEIRS[:REPORT], reports model0, mean or "
        f"best_of_k (default: {PRIMARY}, the model a user deploys)",
    )  # fmt: skip
    parser.add_argument(
        "--secondary", nargs="+", default=[], metavar="CONTRAST",
        help="declared secondary endpoints, OURS[:REPORT]-THEIRS[:REPORT] each: reported first after "
        "the primary, in this order, with Holm's adjustment over them (default: none; then Holm over "
        "every exploratory contrast)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME:FIELD=VALUE[,...]",
        help="also train grafting with other settings, as method NAME, paired against nograft "
        "(e.g. graft_c5:c=5); repeatable (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--val-ids", type=int,
        help="when the recipe holds out no validation: identities (classification: images per "
        "class) to hold out for choosing the best of K (default: 10%%; 0: choose on the test set)",
    )  # fmt: skip
    parser.add_argument(
        "--output", help="folder for the runs and the table (default: runs/compare-<recipe name>)"
    )
    data = parser.add_argument_group("data (set for every run; default: the recipe's)")
    data.add_argument(
        "--root", help="the data root: the folder holding the dataset (or, for folder, the crops)"
    )
    data.add_argument("--dataset", help="the dataset's name (market1501, folder, cuhk01, ...)")
    data.add_argument("--height", type=int, help="input height in pixels")
    data.add_argument("--width", type=int, help="input width in pixels")
    data.add_argument("--workers", type=int, help="data-loading processes per model")
    data.add_argument(
        "--split", type=float, help="folder: split one pile by identity, training on this share of them"
    )
    data.add_argument("--split-seed", type=int, help="folder with --split: the seed of the split")
    return parser


DATA_FLAGS = ("root", "dataset", "height", "width", "workers", "split", "split_seed")


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = compare(
            args.config, seeds=args.seeds, models=args.models, methods=args.methods, output=args.output,
            primary=args.primary, variants=args.variant, val_ids=args.val_ids, ema_decay=args.ema_decay,
            secondary=args.secondary, seeds_of=args.seeds_of,
            overrides={flag: getattr(args, flag) for flag in DATA_FLAGS if getattr(args, flag) is not None},
        )  # fmt: skip
        written = write_report(result)
    except USER_ERRORS as error:
        return report_error("compare", error)
    print(written[0].read_text())
    print(f"written: {written[0]}, {written[1].name}, {written[2].name}")
    return 0


if __name__ == "__main__":
    from . import entry

    sys.exit(entry.compare())
