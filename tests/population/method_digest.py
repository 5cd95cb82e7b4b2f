"""The fingerprint of tiny runs of every population method (and EMA, teachers, the strong
recipe, classification, resumes): each model's final weights, buffers, optimizer and scheduler
state, its center-loss state and EMA copy; every epoch record and metrics.json (times left out);
and the lines the run printed. `method_digests.json` holds what the trainer gave before the
methods became registered participants (commit 7a2db7e); `test_methods_unchanged.py` checks that
it still gives exactly that. Made by
`python -m tests.population.method_digest > tests/population/method_digests.json` on the CI
machine (CPU, 2 intra-op threads, deterministic kernels). The models step one after another
(`parallel_models="none"`), as they all did then; `test_side_by_side.py` holds the side-by-side
path to these runs within float tolerance."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

TINY = dict(train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
REID = dict(
    dataset="synthetic", arch="mobilenetv2_x1_0", models=2, epochs=2, batch_size=8, height=32, width=16,
    lr=0.01, optimizer="sgd", eval_batch_size=32, deterministic=True, device="cpu", weights="none",
    amp="none", parallel_models="none",
)  # fmt: skip
DIGITS = dict(
    dataset="digits", arch="resnet20", models=2, epochs=2, batch_size=64, optimizer="sgd", lr=0.1,
    scheduler="cosine", label_smooth=0.0, transforms=["random_crop"], eval_every=1, eval_batch_size=450,
    device="cpu", deterministic=True, amp="none", parallel_models="none",
)  # fmt: skip
STRONG = dict(
    loss=["softmax", "triplet"], sampler="identity", num_instances=2, bnneck=True, center_loss_weight=0.0005
)

# name -> the run's settings over REID; `resume_after`: train that many epochs first, then resume
# to `epochs` from the checkpoint (in a new trainer, as --resume does); `teacher`: a one-model
# run trained first, its model 0 the teacher.
CASES: dict[str, dict[str, Any]] = {
    "none_k2": dict(population="none", eval_every=1),
    "graft_k1": dict(models=1),
    "graft_k2_validation": dict(eval_every=1, val_ids=2),
    "graft_internal_k2": dict(scion="internal"),
    "graft_noise_k3": dict(scion="noise", models=3, epochs=3),
    "graft_filter_k2": dict(graft_level="filter", eval_every=1),
    "graft_k2_resume": dict(epochs=3, eval_every=1, resume_after=2),
    "graft_after_k2_resume": dict(epochs=3, eval_after_graft=True, resume_after=1),
    "graft_strong_k2": dict(**STRONG, eval_every=1),
    "graft_teacher_k2": dict(teacher=True, kd_weight=0.5),
    "dml_k2": dict(population="dml", eval_every=1),
    "dml_k3_resume": dict(population="dml", models=3, epochs=3, resume_after=2),
    "papa_gradual_k2": dict(population="papa", papa_every=2, eval_every=1),
    "papa_all_k2_after": dict(
        population="papa", papa_mode="all", papa_every_epochs=1, epochs=3, eval_after_graft=True
    ),
    "papa_pairs_k3_resume": dict(
        population="papa", papa_mode="pairs", papa_every_epochs=1, models=3, epochs=3, resume_after=2
    ),
    "ema_graft_k2": dict(ema=0.9, eval_every=1, val_ids=2),
    "ema_none_k1_resume": dict(ema=0.9, models=1, population="none", epochs=3, resume_after=2),
    "ema_papa_all_k2_resume": dict(
        ema=0.5, population="papa", papa_mode="all", papa_every_epochs=1, epochs=3, resume_after=1
    ),
    "digits_graft_k2": dict(dataset="digits"),
    "digits_papa_k2": dict(dataset="digits", population="papa", papa_every=3),
}  # fmt: skip


def ema_copies(trainer) -> list[torch.nn.Module]:
    """The run's EMA copies (none without --ema)."""
    return [copy for participant in trainer.participants for copy in getattr(participant, "copies", [])]


def _tensor_bytes(digest, value: Any) -> None:
    """Every tensor of a nested state (dicts, lists), in order; other values as JSON."""
    if torch.is_tensor(value):
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, dict):
        for key in value:
            digest.update(str(key).encode())
            _tensor_bytes(digest, value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            _tensor_bytes(digest, item)
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_times(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [_without_times(item) for item in value]
    return value


def run_digest(data: dict[str, Any], folder: Path, case: dict[str, Any]) -> str:
    from reidgraft.config import build_config
    from reidgraft.engine import Trainer, load_checkpoint

    case = dict(case)
    resume_after = case.pop("resume_after", None)
    values = {**(DIGITS if case.get("dataset") == "digits" else REID), **case}
    splits = data["digits" if values["dataset"] == "digits" else "synthetic"]
    lines: list[str] = []

    def log(*parts, **options):
        lines.append(re.sub(r"\s+\(\d+\.\d s\)$", "", " ".join(str(part) for part in parts)))

    if values.pop("teacher", False):
        teacher = Trainer(
            build_config(**{**values, "models": 1, "epochs": 1}), splits, folder / "teacher", log=log
        )
        teacher.fit()
        values["teacher"] = [str(folder / "teacher" / "checkpoint.pt")]
    run = folder / "run"
    if resume_after is not None:
        Trainer(build_config(**{**values, "epochs": resume_after}), splits, run, log=log).fit()
        trainer = Trainer(build_config(**values), splits, run, log=log)
        trainer.load_state(load_checkpoint(run))
    else:
        trainer = Trainer(build_config(**values), splits, run, log=log)
    final = trainer.fit()
    digest = hashlib.sha256()
    for member in trainer.members:
        _tensor_bytes(digest, member.model.state_dict())
        _tensor_bytes(digest, member.optimizer.state_dict())
        _tensor_bytes(digest, member.scheduler.state_dict())
        if member.center is not None:
            _tensor_bytes(digest, [member.center.state_dict(), member.center_optimizer.state_dict()])
    for copy in ema_copies(trainer):
        _tensor_bytes(digest, copy.state_dict())
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("step", None)  # (how the models stepped: recorded since issue 35)
    for part in (_without_times(trainer.history), _without_times(metrics), final, lines):
        digest.update(json.dumps(part, sort_keys=True).encode())
    return digest.hexdigest()


def load_data(folder: Path) -> dict[str, Any]:
    from reidgraft.data import load_classification_dataset
    from reidgraft.data.datasets import synthetic_splits

    return {
        "synthetic": synthetic_splits(folder / "data", **TINY),
        "digits": load_classification_dataset("digits", "unused"),
    }


def digests() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        data = load_data(Path(folder))
        return {name: run_digest(data, Path(folder) / name, case) for name, case in CASES.items()}


if __name__ == "__main__":
    torch.set_num_threads(2)
    json.dump({"threads": 2, **digests()}, sys.stdout, indent=1)
    print()
