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

from ..analysis import (
    DEFAULT_THRESHOLDS,
    INVALID_FRACTION,
    filter_norms,
    invalid_iou,
    invalid_ratios,
    layer_entropies,
    valid_invalid_l1,
)
from ..engine import RunDir, load_checkpoint
from ..files import atomic_write, atomic_write_json, check_writable


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


def load_models(run_dir: str, label: str) -> tuple[dict, dict]:
    """{name: state} for every model of a run, and its config."""
    payload = load_checkpoint(Path(run_dir))
    names = [f"{label}{k}" for k in range(len(payload["models"]))]
    return dict(zip(names, payload["models"])), payload["config"]


def analyse(models: dict, baselines: dict, split_thresholds) -> dict:
    norms = {name: filter_norms(state) for name, state in {**models, **baselines}.items()}
    reference = next(iter(norms.values()))
    for name, layer_norms in norms.items():
        if [(k, len(v)) for k, v in layer_norms.items()] != [(k, len(v)) for k, v in reference.items()]:
            raise ValueError(
                f"{name} has other convolutions than {next(iter(norms))}; compare one architecture"
            )
    entropies = {name: layer_entropies(state) for name, state in {**models, **baselines}.items()}
    report = {
        "layers": list(reference),
        "filters": int(sum(len(v) for v in reference.values())),
        "invalid_ratio": {
            "thresholds": list(DEFAULT_THRESHOLDS),
            "models": {name: invalid_ratios(layer_norms) for name, layer_norms in norms.items()},
        },
        "entropy": {
            name: {"layers": per_layer, "network": float(sum(per_layer.values()))}
            for name, per_layer in entropies.items()
        },
        "invalid_iou": {"fraction": INVALID_FRACTION, "pairs": {}},
    }
    for group in (list(models), list(baselines)):  # neighbours in the ring: k and k + 1
        for first, second in zip(group, group[1:]):
            report["invalid_iou"]["pairs"][f"{first}-{second}"] = invalid_iou(norms[first], norms[second])
    if baselines:
        split_by = next(iter(baselines))
        report["valid_invalid_l1"] = {
            "split_by": split_by,
            "models": {
                name: [valid_invalid_l1(norms[split_by], layer_norms, t) for t in split_thresholds]
                for name, layer_norms in norms.items()
            },
        }
    return report


def plot(report: dict, output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(figure, name):
        path = output / name
        atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"))
        plt.close(figure)
        written.append(path)

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, ratios in report["invalid_ratio"]["models"].items():
        style = "--" if name.startswith("baseline") else "-"
        axes.plot(report["invalid_ratio"]["thresholds"], ratios, style, marker="o", markersize=3, label=name)
    axes.set(xscale="log", xlabel="L1 norm threshold", ylabel="fraction of filters below it",
             title="Invalid filters")  # fmt: skip
    axes.legend(fontsize=8)
    save(figure, "invalid_ratio.png")

    figure, axes = plt.subplots(figsize=(8, 4))
    for name, entropy in report["entropy"].items():
        style = "--" if name.startswith("baseline") else "-"
        axes.plot(list(entropy["layers"].values()), style, label=f"{name} (total {entropy['network']:.1f})")
    axes.set(xlabel="convolution (network order)", ylabel="entropy (nats)", title="Layer entropy")
    axes.legend(fontsize=8)
    save(figure, "entropy.png")

    figure, axes = plt.subplots(figsize=(8, 4))
    for pair, ious in report["invalid_iou"]["pairs"].items():
        axes.plot(list(ious.values()), marker=".", label=pair)
    share = 100 * report["invalid_iou"]["fraction"]
    axes.set(xlabel="convolution (network order)", ylabel="IoU", ylim=(-0.05, 1.05),
             title=f"IoU of invalid filters ({share:.0f}% smallest L1 per layer)")  # fmt: skip
    if report["invalid_iou"]["pairs"]:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "one model per run: no pair to compare", ha="center", transform=axes.transAxes)
    save(figure, "iou.png")
    return written


def print_summary(report: dict) -> None:
    thresholds = report["invalid_ratio"]["thresholds"]
    at = {t: min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - t)) for t in (1e-3, 1e-1)}
    iou_of = {}
    for pair, ious in report["invalid_iou"]["pairs"].items():
        iou_of.setdefault(pair.split("-")[0], sum(ious.values()) / len(ious))
    print(f"{report['filters']} filters in {len(report['layers'])} convolutions")
    print(f"{'model':<11} {'invalid@1e-3':>12} {'invalid@0.1':>11} {'entropy':>8} {'IoU next':>8}")
    for name, ratios in report["invalid_ratio"]["models"].items():
        iou = f"{iou_of[name]:.3f}" if name in iou_of else "-"
        print(
            f"{name:<11} {100 * ratios[at[1e-3]]:>11.1f}% {100 * ratios[at[1e-1]]:>10.1f}% "
            f"{report['entropy'][name]['network']:>8.2f} {iou:>8}"
        )
    if "valid_invalid_l1" in report:
        print(f"average L1 of valid / invalid filters (split by {report['valid_invalid_l1']['split_by']}):")
        for name, rows in report["valid_invalid_l1"]["models"].items():
            show = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
            cells = [
                f"t={row['threshold']:g}: {show(row['valid_mean_l1'])} / {show(row['invalid_mean_l1'])} "
                f"({row['invalid_count']} invalid)"
                for row in rows
            ]
            print(f"  {name:<11} " + "; ".join(cells))


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
    except (ValueError, OSError) as error:
        print(f"analyze: {error}", file=sys.stderr)
        return 2
    print_summary(report)
    print(f"written: {output / 'analysis.json'}, " + ", ".join(path.name for path in pictures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
