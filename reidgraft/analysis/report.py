"""Filter analysis of a run, optionally against a baseline run, as the papers' Fig. 6-7 and
journal Table 8 show it: invalid-filter ratios, layer and network entropy, invalid-filter IoU
between neighbouring models, and the average L1 of valid and invalid filters (split taken from
the baseline); its plots and its summary table. `reidgraft-analyze` is the command."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from .filters import (
    DEFAULT_THRESHOLDS,
    INVALID_FRACTION,
    filter_norms,
    invalid_iou,
    invalid_ratios,
    layer_entropies,
    valid_invalid_l1,
)


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


def summary_lines(report: dict) -> list[str]:
    """The summary table of `analyse`'s report, one line each."""
    lines: list[str] = []
    add = lines.append
    thresholds = report["invalid_ratio"]["thresholds"]
    at = {t: min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - t)) for t in (1e-3, 1e-1)}
    iou_of = {}
    for pair, ious in report["invalid_iou"]["pairs"].items():
        iou_of.setdefault(pair.split("-")[0], sum(ious.values()) / len(ious))
    add(f"{report['filters']} filters in {len(report['layers'])} convolutions")
    add(f"{'model':<11} {'invalid@1e-3':>12} {'invalid@0.1':>11} {'entropy':>8} {'IoU next':>8}")
    for name, ratios in report["invalid_ratio"]["models"].items():
        iou = f"{iou_of[name]:.3f}" if name in iou_of else "-"
        add(
            f"{name:<11} {100 * ratios[at[1e-3]]:>11.1f}% {100 * ratios[at[1e-1]]:>10.1f}% "
            f"{report['entropy'][name]['network']:>8.2f} {iou:>8}"
        )
    if "valid_invalid_l1" in report:
        add(f"average L1 of valid / invalid filters (split by {report['valid_invalid_l1']['split_by']}):")
        for name, rows in report["valid_invalid_l1"]["models"].items():
            show = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
            cells = [
                f"t={row['threshold']:g}: {show(row['valid_mean_l1'])} / {show(row['invalid_mean_l1'])} "
                f"({row['invalid_count']} invalid)"
                for row in rows
            ]
            add(f"  {name:<11} " + "; ".join(cells))
    return lines
