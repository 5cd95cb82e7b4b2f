"""The comparison's report: the declared primary endpoint first, alone, with its t-interval over
seeds and a verdict in plain words; then every method (mean ± standard deviation over seeds) and
the exploratory contrasts; the same numbers as JSON, and a picture."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..files import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_own_outputs,
    claim_outputs,
    record_outputs,
)
from .comparison import REPORT_FILES, REPORTS, ComparisonResult, holds_runs

LABEL = {"mAP": "mAP", "rank1": "rank-1", "top1": "top-1"}


def points(value: float | None, sign: bool = True) -> str:
    return "-" if value is None else f"{100 * value:{'+' if sign else ''}.2f}"


def interval(values: list[float] | None) -> str:
    return "-" if not values else f"[{points(values[0])}, {points(values[1])}]"


def p_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def contrast_rows(entries: list[dict], label: dict[str, str]) -> list[str]:
    """The table of contrasts: per seed, mean, intervals, p (raw and Holm-adjusted), detectable."""
    lines = [
        "| K | contrast | metric | per seed | mean | 95% t-interval | p | Holm p | bootstrap 95% "
        "| detectable (80%) | seeds for 1 point | best of K chosen on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        chosen = ", ".join(f"{method}: {place}" for method, place in (entry.get("chosen_on") or {}).items())
        lines.append(
            f"| {entry['models']} | {entry['label']} | {label[entry['metric']]} | "
            f"{' '.join(points(v) for v in entry['per_seed'])} | {points(entry['mean'])} | "
            f"{interval(entry['t_interval95'])} | {p_value(entry.get('p'))} | "
            f"{p_value(entry.get('p_holm'))} | "
            f"{interval(entry['bootstrap95'])} ({entry['bootstrap_resamples']}) | "
            f"{points(entry['mde80'], False) if entry['mde80'] is not None else '-'} | "
            f"{entry['seeds_for_one_point'] or '-'} | {chosen or '-'} |"
        )
    return lines


def primary_section(entry: dict) -> list[str]:
    """The declared endpoint of one K, alone: its per-seed differences, interval and verdict."""
    seeds = entry.get("seeds", len(entry["per_seed"]))
    lines = [
        f"**K = {entry['models']}: {entry['label']}, {LABEL[entry['metric']]}, last epoch, in points**",
        "",
        f"- per seed: {', '.join(points(v) for v in entry['per_seed'])}",
        f"- mean {points(entry['mean'])}; 95% t-interval over {seeds} seed{'s' if seeds > 1 else ''}: "
        f"{interval(entry['t_interval95']) if entry['t_interval95'] else 'none (one seed)'}"
        + (" (rough: fewer than 5 seeds)" if entry["rough"] and seeds > 1 else ""),
        f"- verdict: **{entry['verdict']}**"
        + (f" (t-test p = {p_value(entry['p'])})" if entry.get("p") is not None else ""),
    ]
    if entry["mde80"] is not None:
        needed = entry["seeds_for_one_point"]
        lines.append(
            f"- these seeds detect a true difference of ±{points(entry['mde80'], False)} points with 80% "
            f"power; detecting 1 point at this spread takes {needed if needed else 'more than 10,000'} seeds"
        )
    if entry.get("chosen_on"):
        where = ", ".join(f"{method} on {place}" for method, place in entry["chosen_on"].items())
        lines.append(f"- best of K chosen: {where}")
    resampled = entry["bootstrap_resamples"]
    lines.append(f"- secondary: bootstrap 95% interval over {resampled}: {interval(entry['bootstrap95'])}")
    return lines + [""]


def learning_curves(result: ComparisonResult) -> dict[str, dict[str, list[float]]]:
    """Each trained row's validation curve on the primary metric: at every evaluated epoch, each
    seed's mean over its models, then the mean over seeds and the lowest and highest seed (the
    band); rows whose runs recorded no validation, and rows derived from another method's runs
    (which train nothing), have none. Read from the runs' metrics.json."""
    metric, curves = result.keys[0], {}
    for row in result.rows:
        if row.get("derived_from"):
            continue
        per_seed: list[dict[int, float]] = []
        for name in row["runs"]:
            path = result.output / name / "metrics.json"
            epochs = json.loads(path.read_text()).get("epochs", []) if path.is_file() else []
            per_seed.append(
                {
                    record["epoch"]: statistics.fmean(r[metric] for r in record["val_metrics"])
                    for record in epochs
                    if record.get("val_metrics")
                }
            )
        shared = sorted(set.intersection(*(set(seed) for seed in per_seed))) if per_seed else []
        if not shared:
            continue
        key = f"{row['method']} K={row['models']}"
        if key in curves:  # single_long trains one model per K: name its runs' K
            key = f"{row['method']} ({row['runs'][0].split('-')[1]})"
        values = [[seed[epoch] for seed in per_seed] for epoch in shared]
        curves[key] = {
            "epochs": shared,
            "mean": [statistics.fmean(v) for v in values],
            "low": [min(v) for v in values],
            "high": [max(v) for v in values],
            "runs": row["runs"],
        }
    return curves


def write_report(result: ComparisonResult) -> list[Path]:
    """comparison.md (the primary endpoint first, then every method and the exploratory
    contrasts), comparison.json (every number) and comparison.png (the primary metric's bars and
    paired intervals) in the comparison's folder; returns their paths."""
    rows, paired, keys, output, source = result.rows, result.paired, result.keys, result.output, result.source
    output.mkdir(parents=True, exist_ok=True)
    check_own_outputs(output, REPORT_FILES, "--output", ours=holds_runs(output))
    claim_outputs(output, REPORT_FILES)
    label = LABEL
    primary = keys[0]
    seeds = result.seeds or len(rows[0]["runs"])
    paired_seeds = {entry.get("seeds", len(entry["per_seed"])) for entry in paired}
    lines = [
        f"# Comparison for `{source}`",
        "",
        f"On the test set at the last epoch, {seeds} seed{'s' if seeds > 1 else ''} (replicate s: model k "
        f"uses seed 1000 s + k); best of K chosen on {result.validation or 'validation'}."
        + (
            " Some methods ran on fewer seeds (the rows' seeds column); each contrast pairs the seeds "
            "both of its sides have."
            if any(len(row["runs"]) < seeds for row in rows)
            else ""
        ),
        "",
        f"## Primary endpoint: {result.primary.name} (declared before the run with --primary)",
        "",
    ]
    first = [entry for entry in paired if entry["primary"]]
    for entry in first:
        lines += primary_section(entry)
    if not first:
        lines += ["(its methods were not compared)", ""]
    lines += [
        "## Every method (exploratory)",
        "",
        "Mean ± standard deviation over seeds, in %. Reports: model 0 (declared before training), the "
        "mean over the K models, and the best of K. Methods with one model have one value.",
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
    declared = [entry for entry in paired if entry.get("secondary")]
    if declared:
        lines += [
            "",
            "## Declared secondary endpoints (with --secondary, before the run)",
            "",
            "Paired by seed on the same queries (images), in points, in the declared order. Holm's "
            f"adjustment over these {len({e['contrast'] for e in declared})} contrasts on "
            f"{label[primary]} (for each K); the other metric's rows are not adjusted.",
            "",
            *contrast_rows(declared, label),
        ]
    lines += [
        "",
        "## Other contrasts (exploratory)",
        "",
        "Paired by seed on the same queries (images), in points. Read them as leads, not findings"
        + (
            "; their p-values are raw (Holm's adjustment covers the declared secondaries only)."
            if declared
            else f"; the Holm p corrects for every exploratory contrast on {label[primary]} (for each K)."
        )
        + " t-interval over seeds (the seed is the replicated unit); the bootstrap column resamples "
        "what it names and is too narrow when seed-to-seed variation dominates."
        + (" An interval over fewer than 5 seeds is rough." if any(1 < n < 5 for n in paired_seeds) else "")
        + (" One seed: no interval over seeds." if 1 in paired_seeds else ""),
        "",
        *contrast_rows([e for e in paired if not e["primary"] and not e.get("secondary")], label),
    ]
    curves = learning_curves(result)
    if curves:
        lines += [
            "",
            "## Learning curves (validation)",
            "",
            f"`comparison-curves.png`: validation {label[primary]} at each evaluated epoch, the mean of each "
            "run's models, then the mean over seeds with a band from the lowest to the highest seed (in "
            "`comparison.json`: `curves`). The test set plays no part in them.",
        ]
    atomic_write_text(output / "comparison.md", "\n".join(lines) + "\n")
    atomic_write_json(
        output / "comparison.json",
        {
            "config": source, "metric": primary, "primary": result.primary.name,
            "secondary": list(result.secondary),
            "validation": result.validation, "seeds": seeds, "rows": rows, "paired": paired,
            "curves": curves,
        },
    )  # fmt: skip

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
    for i, entry in enumerate(shown):  # the t-interval over seeds; with one seed, the bootstrap's
        low, high = entry["t_interval95"] or entry["bootstrap95"]
        value = 100 * entry["mean"]
        differences.errorbar(
            i, value, yerr=[[value - 100 * low], [100 * high - value]], fmt="o", capsize=3,
            color="tab:red" if entry["primary"] else "tab:blue",
        )  # fmt: skip
    differences.axhline(0, color="grey", linewidth=0.8)
    differences.set_xticks(
        range(len(shown)), [f"K={e['models']} {e['label']}" for e in shown], fontsize=5, rotation=90
    )
    differences.set_ylabel(f"paired difference, {label[primary]} points (95%; red: primary)")
    atomic_write(
        output / "comparison.png",
        lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
    )
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        epochs = curve["epochs"]
        fewer = f" ({len(curve['runs'])} seeds)" if len(curve["runs"]) < seeds else ""
        axes.plot(epochs, [100 * v for v in curve["mean"]], marker="o", markersize=3, label=name + fewer)
        axes.fill_between(
            epochs, [100 * v for v in curve["low"]], [100 * v for v in curve["high"]], alpha=0.15
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation {label[primary]} (%), mean of the models")
    axes.set_title(
        f"mean over {seeds} seed{'s' if seeds > 1 else ''}; band: lowest to highest seed", fontsize=9
    )
    if curves:
        axes.legend(fontsize=7)
    else:
        axes.text(0.5, 0.5, "no run recorded validation scores", ha="center", transform=axes.transAxes)
    atomic_write(
        output / "comparison-curves.png",
        lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
    )
    plt.close(figure)
    record_outputs(output, REPORT_FILES)
    return [output / name for name in REPORT_FILES]
