"""What a run reports: the console line of each epoch, TensorBoard scalars, the contents of
metrics.json, and the table of final metrics the CLIs print."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..grafting.weighting import mean_alphas

# Every epoch record has these entries: `alphas` stays None unless a graft filed its alphas there
# (the epoch line, TensorBoard and the readers of metrics.json look for it)
EPOCH_RECORD_DEFAULTS = {"alphas": None}


class EpochLog:
    """Writes each epoch's record to the console (through `log`) and to TensorBoard in `folder`
    (opened on the first record, so a run that never finishes an epoch leaves no events file)."""

    def __init__(self, folder: Path, epochs: int, metric_keys: Sequence[str], primary: str, log: Callable):
        self.folder, self.epochs, self.metric_keys, self.primary, self.log = (
            folder,
            epochs,
            metric_keys,
            primary,
            log,
        )
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def record(self, record: dict[str, Any]) -> None:
        epoch, scalar = record["epoch"], self.writer.add_scalar
        for k, loss in enumerate(record["loss"]):
            scalar(f"loss/model{k}", loss, epoch)
            scalar(f"lr/model{k}", record["lr"][k], epoch)
            scalar(f"train_accuracy/model{k}", record["train_accuracy"][k], epoch)
            scalar(f"invalid_ratio_1e-3/model{k}", record["invalid_ratio_1e-3"][k], epoch)
            scalar(f"network_entropy/model{k}", record["network_entropy"][k], epoch)
        self._alpha_scalars(record)
        for result in record.get("metrics") or []:
            for key in self.metric_keys:
                scalar(f"{key}/model{result['model']}", result[key], epoch)
        for result in record.get("val_metrics") or []:
            for key in self.metric_keys:
                scalar(f"validation_{key}/model{result['model']}", result[key], epoch)
        self.log(f"{epoch_line(record, self.epochs, self.primary)}  ({record['seconds']:.1f} s)")

    def exchange(self, done: dict[str, Any], lines: list[str]) -> None:
        """An exchange made after epoch `done["epoch"]` was saved (the authors' order), on lines of
        its own (the participants' words): the epoch's line was written before it happened."""
        self._alpha_scalars(done)
        for line in lines:
            self.log(line)

    def _alpha_scalars(self, record: dict[str, Any]) -> None:
        """Each model's mean alpha, when a graft filed alphas in `record`."""
        for k, mean in enumerate(mean_alphas(record.get("alphas") or [])):
            self.writer.add_scalar(f"alpha_mean/model{k}", mean, record["epoch"])


def epoch_line(record: dict[str, Any], epochs: int, primary: str) -> str:
    """`epoch 3/60  loss 1.234 1.301  mean alpha 0.512 0.488  mAP 0.412 0.398`, or with validation
    held out `... test mAP 0.412 0.398  validation mAP 0.530 0.517`."""
    line = f"epoch {record['epoch']}/{epochs}  loss " + " ".join(f"{v:.3f}" for v in record["loss"])
    if record["alphas"]:
        line += "  mean alpha " + " ".join(f"{v:.3f}" for v in mean_alphas(record["alphas"]))
    test, validation = record.get("metrics"), record.get("val_metrics")
    if test:  # named "test" only beside validation's, so a reader never takes one for the other
        line += f"  {'test ' if validation else ''}{primary} " + " ".join(f"{r[primary]:.3f}" for r in test)
    if validation:  # (test_scoring last: validation alone before the last epoch)
        line += f"  validation {primary} " + " ".join(f"{r[primary]:.3f}" for r in validation)
    return line


def best_epochs(
    history: list[dict[str, Any]], models: int, primary: str, on_validation: bool = False
) -> list[dict[str, Any]] | None:
    """Each model's best evaluated epoch by `primary`: its test metrics at the epoch chosen on the
    validation set when `on_validation`, else on the test set (the papers' practice), labelled
    either way; None before any evaluation."""
    chooser = "val_metrics" if on_validation else "metrics"
    evaluated = [record for record in history if record.get(chooser) and record.get("metrics")]
    if not evaluated:
        return None
    best = []
    for k in range(models):
        record = max(evaluated, key=lambda r: (r[chooser][k][primary], -r["epoch"]))
        row = {**record["metrics"][k], "epoch": record["epoch"]}
        if on_validation:
            row.update({f"validation_{primary}": record[chooser][k][primary], "chosen_on": "validation"})
        else:
            row["chosen_on"] = "test set"
        best.append(row)
    return best


def k_model_report(
    final: list[dict[str, Any]] | None,
    final_validation: list[dict[str, Any]] | None,
    keys: Sequence[str],
    primary: str,
) -> dict[str, Any] | None:
    """What a K-model run reports at its last epoch, each part labelled: model 0 (declared
    before training, as the papers report it), the mean over the K models, and the best of K,
    chosen on validation when there is one, else on the test set (and then said to be)."""
    if not final:
        return None
    if final_validation:
        chosen = max(range(len(final)), key=lambda k: (final_validation[k][primary], -k))
        chosen_on = "validation"
    else:
        chosen = max(range(len(final)), key=lambda k: (final[k][primary], -k))
        chosen_on = "test set"
    return {
        "model0": dict(final[0]),
        "mean": {"models": len(final), **{key: statistics.fmean(row[key] for row in final) for key in keys}},
        "best_of_k": {**final[chosen], "chosen_on": chosen_on},
    }


def metrics_file(
    task: str, history: list, final: list | None, best: list | None, **facts: Any
) -> dict[str, Any]:
    """metrics.json: the task, facts about the run (its initial weights, precision, thread
    count), every epoch's record, the last epoch's metrics ("final") and each model's best
    evaluated epoch ("best")."""
    return {"task": task, **facts, "epochs": history, "final": final, "best": best}


def metrics_table(
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    best: Sequence[dict[str, Any]] | None = None,
    primary: str | None = None,
) -> list[str]:
    """Lines of a table of per-model metrics (fractions printed as %), with each model's best epoch
    by `primary` when `best` is given."""
    header = f"{'model':>5}  " + "  ".join(f"{key:>7}" for key in keys)
    if best:
        header += f"  best {primary} (epoch, chosen on the {best[0]['chosen_on']})"
    lines = [header]
    for k, row in enumerate(rows):
        line = f"{row['model']:>5}  " + "  ".join(f"{100 * row[key]:>6.2f}%" for key in keys)
        if best:
            line += f"  {100 * best[k][primary]:>6.2f}% ({best[k]['epoch']})"
        lines.append(line)
    return lines


def report_lines(report: dict[str, Any] | None, primary: str) -> list[str]:
    """The K-model report in three labelled lines (nothing for one model)."""
    if not report or report["mean"]["models"] < 2:
        return []
    best = report["best_of_k"]
    return [
        f"model 0 (declared before training): {primary} {100 * report['model0'][primary]:.2f}%",
        f"mean of the {report['mean']['models']} models: {primary} {100 * report['mean'][primary]:.2f}%",
        f"best of the {report['mean']['models']} (model {best['model']}, chosen on the {best['chosen_on']}): "
        f"{primary} {100 * best[primary]:.2f}%",
    ]
