"""The pilot's two decisions, taken by the plan's fixed rules on validation only
(docs/study-converged.md, "Pilot"); test numbers are never read.

    python studies/converged/pilot_decide.py [RUNS]         # a table per step, and the decisions
    python studies/converged/pilot_decide.py [RUNS] --epochs # only E, once step 1 is complete

A run's score is its validation mAP at its last epoch, the mean of its 2 models (percent). Each
step needs every seed's run; an incomplete step is listed with what is missing and decides nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

SEEDS = (100000, 101000, 102000)  # the plan's; --seeds for fewer (the plan allows 2)
EPOCHS = (20, 40, 60)
BASE_RATE = "3e-4"
OTHER_RATES = ("1.5e-4", "6e-4")
EPOCH_MARGIN = 1.0  # points: E is the smallest whose next larger E beats it by less than this
RATE_MARGIN = 0.3  # points: 3e-4 is kept when within this of the best rate


def validation_score(folder: Path, epochs: int) -> float | None:
    """The run's last-epoch validation mAP (mean of its models, percent), or None if unfinished."""
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    records = metrics.get("epochs") or []
    if not metrics.get("final") or not records or records[-1]["epoch"] != epochs:
        return None
    validation = records[-1].get("val_metrics")
    if not validation:
        raise SystemExit(f"{folder}: its last epoch holds no validation scores (val_ids, eval_every)")
    return 100 * statistics.fmean(model["mAP"] for model in validation)


def scores(runs: Path, epochs: int, rate: str) -> dict[int, float | None]:
    return {seed: validation_score(runs / f"e{epochs}-lr{rate}-s{seed}", epochs) for seed in SEEDS}


def complete(table: dict[int, float | None]) -> bool:
    return all(value is not None for value in table.values())


def row(label: str, table: dict[int, float | None]) -> str:
    cells = [f"{table[seed]:.2f}" if table[seed] is not None else "missing" for seed in SEEDS]
    mean = f"{statistics.fmean(table.values()):.2f}" if complete(table) else "-"
    return f"| {label} | " + " | ".join(cells) + f" | {mean} |"


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float]:
    """The mean and standard deviation over seeds of b - a."""
    differences = [b[seed] - a[seed] for seed in SEEDS]
    return statistics.fmean(differences), statistics.stdev(differences)


def choose_epochs(runs: Path, out=print) -> int | None:
    tables = {epochs: scores(runs, epochs, BASE_RATE) for epochs in EPOCHS}
    out(f"Step 1: nograft at {BASE_RATE}, validation mAP (mean of 2, last epoch, %), {len(SEEDS)} seeds\n")
    out("| E | " + " | ".join(f"seed {s}" for s in SEEDS) + " | mean |")
    out("|---|" + "---|" * (len(SEEDS) + 1))
    for epochs, table in tables.items():
        out(row(str(epochs), table))
    if not all(complete(table) for table in tables.values()):
        out("\nstep 1 is incomplete: no decision")
        return None
    out("")
    chosen = EPOCHS[-1]
    for smaller, larger in zip(EPOCHS, EPOCHS[1:], strict=False):
        gain, spread = paired(tables[smaller], tables[larger])
        out(f"E = {larger} minus E = {smaller}: {gain:+.2f} points (sd over seeds {spread:.2f})")
    for smaller, larger in zip(EPOCHS, EPOCHS[1:], strict=False):
        if paired(tables[smaller], tables[larger])[0] < EPOCH_MARGIN:
            chosen = smaller
            break
    out(f"E = {chosen} (the smallest whose next larger E gains less than {EPOCH_MARGIN} point; else 60)")
    return chosen


def choose_rate(runs: Path, epochs: int, out=print) -> str | None:
    tables = {rate: scores(runs, epochs, rate) for rate in (BASE_RATE, *OTHER_RATES)}
    out(f"\nStep 2: nograft at E = {epochs}, validation mAP (mean of 2, last epoch, %)\n")
    out("| rate | " + " | ".join(f"seed {s}" for s in SEEDS) + " | mean |")
    out("|---|" + "---|" * (len(SEEDS) + 1))
    for rate, table in tables.items():
        out(row(rate, table))
    if not all(complete(table) for table in tables.values()):
        out("\nstep 2 is incomplete: no decision")
        return None
    out("")
    for rate in OTHER_RATES:
        gain, spread = paired(tables[BASE_RATE], tables[rate])
        out(f"{rate} minus {BASE_RATE}: {gain:+.2f} points (sd over seeds {spread:.2f})")
    means = {rate: statistics.fmean(table.values()) for rate, table in tables.items()}
    best = max(means, key=means.get)
    chosen = BASE_RATE if means[best] - means[BASE_RATE] <= RATE_MARGIN else best
    out(f"rate = {chosen} (the best is {best}; {BASE_RATE} is kept within {RATE_MARGIN} point of it)")
    return chosen


def main(argv: list[str] | None = None) -> int:
    global SEEDS  # (--seeds: the tables and rules read it)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", default="runs/converged/pilot", help="the pilot's runs")
    parser.add_argument("--epochs", action="store_true", help="print only E (exit 1 while undecided)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="the pilot's seeds")
    args = parser.parse_args(argv)
    SEEDS = tuple(args.seeds)
    if len(SEEDS) < 2:
        print("--seeds: give 2 seeds or more (a spread needs two)", file=sys.stderr)
        return 2
    runs = Path(args.runs)
    if not runs.is_dir():
        print(f"{runs}: no such folder; give the pilot's runs (runs/converged/pilot)", file=sys.stderr)
        return 2
    if args.epochs:
        chosen = choose_epochs(runs, out=lambda *_: None)
        if chosen is not None:
            print(chosen)
        return 0 if chosen is not None else 1
    chosen = choose_epochs(runs)
    if chosen is not None:
        choose_rate(runs, chosen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
