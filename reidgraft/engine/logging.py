"""What a run reports: the console line of each epoch, TensorBoard scalars, the contents of
metrics.json, and the table of final metrics the CLIs print."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


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
            if record["alphas"]:
                alphas = list(record["alphas"][k].values())
                scalar(f"alpha_mean/model{k}", sum(alphas) / len(alphas), epoch)
        for result in record.get("metrics") or []:
            for key in self.metric_keys:
                scalar(f"{key}/model{result['model']}", result[key], epoch)
        self.log(f"{epoch_line(record, self.epochs, self.primary)}  ({record['seconds']:.1f} s)")


def epoch_line(record: dict[str, Any], epochs: int, primary: str) -> str:
    """`epoch 3/60  loss 1.234 1.301  mean alpha 0.512 0.488  mAP 0.412 0.398`."""
    line = f"epoch {record['epoch']}/{epochs}  loss " + " ".join(f"{v:.3f}" for v in record["loss"])
    if record["alphas"]:
        means = [sum(a.values()) / len(a) for a in record["alphas"]]
        line += "  mean alpha " + " ".join(f"{v:.3f}" for v in means)
    if record.get("metrics"):
        line += f"  {primary} " + " ".join(f"{r[primary]:.3f}" for r in record["metrics"])
    return line


def best_epochs(history: list[dict[str, Any]], models: int, primary: str) -> list[dict[str, Any]] | None:
    """Each model's best evaluated epoch by `primary`, labelled as chosen on the test data (the
    papers' practice); None before any evaluation."""
    evaluated = [record for record in history if record.get("metrics")]
    if not evaluated:
        return None
    best = []
    for k in range(models):
        record = max(evaluated, key=lambda r: (r["metrics"][k][primary], -r["epoch"]))
        best.append({**record["metrics"][k], "epoch": record["epoch"], "chosen_on": "test set"})
    return best


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
        header += f"  best {primary} (epoch, chosen on the test set)"
    lines = [header]
    for k, row in enumerate(rows):
        line = f"{row['model']:>5}  " + "  ".join(f"{100 * row[key]:>6.2f}%" for key in keys)
        if best:
            line += f"  {100 * best[k][primary]:>6.2f}% ({best[k]['epoch']})"
        lines.append(line)
    return lines
