"""The comparison's report: a markdown table of every method (mean ± standard deviation over
seeds), the paired differences with their intervals, the same numbers as JSON, and a picture."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write, atomic_write_json, atomic_write_text
from .comparison import REPORTS, ComparisonResult


def write_report(result: ComparisonResult) -> list[Path]:
    """comparison.md (the tables), comparison.json (every number) and comparison.png (the
    primary metric's bars and paired intervals) in the comparison's folder; returns their paths."""
    rows, paired, keys, output, source = result.rows, result.paired, result.keys, result.output, result.source
    output.mkdir(parents=True, exist_ok=True)
    label = {"mAP": "mAP", "rank1": "rank-1", "top1": "top-1"}
    primary = keys[0]
    lines = [
        f"Comparison for `{source}`, on the test set: mean ± standard deviation over seeds, in %.",
        "Reports: model 0 (declared before training), the mean over the K models, and the best of K "
        "(its column says where it was chosen). Methods with one model have one value.",
        "",
        "| method | K | " + " | ".join(f"{label[key]} {report}" for report in REPORTS for key in keys)
        + " | best of K chosen on | seeds |",
    ]  # fmt: skip
    lines.append("|" + "---|" * (3 + len(REPORTS) * len(keys) + 1))
    for row in rows:
        cells = [row["method"], str(row["models"])]
        for report in REPORTS:
            for key in keys:
                mean, std = row[report][key]
                cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}")
        cells.append("-" if row["one_value"] else str(row["best_of_k"]["chosen_on"]))
        cells.append(str(len(row["runs"])))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired differences, graft minus each baseline, per seed on the same queries (images), in "
        "points; 95% bootstrap interval over queries (images) and seeds:",
        "",
        "| K | graft minus | report | metric | difference | 95% interval |",
        "|---|---|---|---|---|---|",
    ]
    for entry in paired:
        low, high = entry["ci95"]
        lines.append(
            f"| {entry['models']} | {entry['against']} | {entry['report']} | {label[entry['metric']]} | "
            f"{100 * entry['difference']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] |"
        )
    atomic_write_text(output / "comparison.md", "\n".join(lines) + "\n")
    atomic_write_json(
        output / "comparison.json", {"config": source, "metric": primary, "rows": rows, "paired": paired}
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, differences) = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 5), 3.8))
    width = 0.27
    for offset, report in enumerate(REPORTS):
        means = [100 * row[report][primary][0] for row in rows]
        errors = [100 * row[report][primary][1] for row in rows]
        positions = [i + (offset - 1) * width for i in range(len(rows))]
        bars.bar(positions, means, width, yerr=errors, capsize=2, label=report)
    labels = [f"{row['method']} K={row['models']}" for row in rows]
    bars.set_xticks(range(len(rows)), labels, fontsize=6, rotation=45, ha="right")
    bars.set_ylabel(f"{label[primary]} (%), last epoch")
    bars.legend(fontsize=7)
    shown = [entry for entry in paired if entry["metric"] == primary]
    for i, entry in enumerate(shown):
        low, high = entry["ci95"]
        value = 100 * entry["difference"]
        differences.errorbar(i, value, yerr=[[value - 100 * low], [100 * high - value]], fmt="o", capsize=3)
    differences.axhline(0, color="grey", linewidth=0.8)
    differences.set_xticks(
        range(len(shown)), [f"K={e['models']} −{e['against']}\n{e['report']}" for e in shown], fontsize=5,
        rotation=90,
    )  # fmt: skip
    differences.set_ylabel(f"graft minus baseline, {label[primary]} points (95% CI)")
    atomic_write(
        output / "comparison.png",
        lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
    )
    plt.close(figure)
    return [output / "comparison.md", output / "comparison.json", output / "comparison.png"]
