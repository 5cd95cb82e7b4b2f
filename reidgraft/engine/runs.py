"""Starting runs from a config (checked first by `preflight`): the task's data loaded, a run
started (`start_run`: what reidgraft-train and the Python API `train` share, torchrun's ranks
and resumes included), and a run carried to its last epoch (reusing or resuming what its folder
already holds, under the run folder's resume policy: what compare does)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, TrainConfig, current_names, runtime_fields
from ..data.registry import load_dataset
from ..data.splits import UNKNOWN_CAMERA, ReidSplits
from ..files import json_fingerprint
from .preflight import preflight
from .run_dir import RunDir, check_same_data, check_same_method

if TYPE_CHECKING:
    from ..data.classification import ClassificationData
    from .distributed import OneModelPerProcess
    from .trainer import Trainer

# (the trainer, and with it torch, is imported where a run starts, after the preflight: a bad
# setting or missing data is said before they load)


def load_data(config: TrainConfig, log: Callable[[str], None] = print) -> ReidSplits | ClassificationData:
    data = load_dataset(config.dataset, config.root, download=config.download, options=config.to_dict())
    if not isinstance(data, ReidSplits):  # (classification)
        log(
            f"{config.dataset}: {len(data.train_images)} train and {len(data.test_images)} test images, "
            f"{data.num_classes} classes"
        )
    else:
        log(
            f"{config.dataset}: {len(data.train)} train images of {data.num_train_pids} identities, "
            f"{len(data.query)} query, {len(data.gallery)} gallery"
        )
        check_cross_camera(data)
        if all(camid == UNKNOWN_CAMERA for *_, camid in data.query + data.gallery):
            log(
                f"note: {config.dataset}: no camera ids, so every gallery image of the query's person is a "
                "match, same-camera ones included (only the query image itself is left out: it is not in "
                "the gallery); numbers are higher than the Market-1501 protocol would give"
            )
    return data


def check_cross_camera(splits: ReidSplits) -> None:
    """ConfigError (one line), before any training, when no query can be evaluated: re-ID
    evaluation leaves out the gallery images of the query's own camera, so a query needs its
    person in the gallery seen by another camera (a folder of one camera's crops has none)."""
    cameras: dict[int, set[int]] = {}
    for _, pid, camid in splits.gallery:
        cameras.setdefault(pid, set()).add(camid)
    if not any(
        cameras.get(pid, set()) - ({camid} - {UNKNOWN_CAMERA}) for _, pid, camid in splits.query
    ):  # (an unknown camera is nobody's own: any gallery image of the person is a match)
        seen = sorted({camid + 1 for *_, camid in splits.query} | {camid + 1 for *_, camid in splits.gallery})
        raise ConfigError(
            f"{splits.name}: no query has its person in the gallery from another camera (cameras "
            f"seen: {', '.join(map(str, seen)) or 'none'}), so nothing can be evaluated; give query and "
            "gallery crops of each person from different cameras (the cN of a Market-1501 file name)"
        )


# Settings that decide where and how fast a run goes, not what it computes (their role in the
# schema is `runtime`): a run reused or resumed by `finish_run` may differ in these alone.
NOT_IN_RESULT = runtime_fields()


def result_config(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's result (its whole resolved config but NOT_IN_RESULT). A
    setting missing from a run saved before it existed reads as its default, which that run used.
    A whole number in a real-valued field reads as that real (c: 5 is c: 5.0), so the two hash alike."""
    defaults = TrainConfig().to_dict()
    complete = {**defaults, **current_names(config)}  # (a run saved `graft: true` before population)
    return {
        name: float(value) if _whole_for_real(defaults.get(name), value) else value
        for name, value in complete.items()
        if name not in NOT_IN_RESULT
    }


def _whole_for_real(default: Any, value: Any) -> bool:
    return isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)


def config_sha256(config: dict[str, Any]) -> str:
    """A hash of `result_config`: equal hashes, equal recipes."""
    return json_fingerprint(result_config(config))


def check_run_folder(config: TrainConfig, data: ReidSplits | ClassificationData) -> dict[str, Any] | None:
    """May `config.output` be trained, reused or resumed as `config` on `data`? None for a new
    run (ConfigError when the folder may not take one); the checkpoint's payload for a run already
    there whose whole resolved config equals `config` (but NOT_IN_RESULT), that recorded the same
    data and that this METHOD_VERSION trained; anything else is a ConfigError naming what
    differs. Reads, trains nothing: a comparison checks every planned run with it first."""
    run = RunDir(config.output)
    if not run.has_checkpoint():
        run.check_new()
        return None
    payload = run.resume_payload()
    saved, wanted = result_config(payload["config"]), result_config(config.to_dict())
    if config_sha256(saved) != config_sha256(wanted):
        differing = sorted(
            name
            for name in saved.keys() | wanted.keys()
            if json_fingerprint(saved.get(name)) != json_fingerprint(wanted.get(name))
        )
        shown = ", ".join(f"{name} {saved.get(name)!r} (now {wanted.get(name)!r})" for name in differing[:3])
        raise ConfigError(
            f"{run.path} holds a run of another recipe: {shown}"
            f"{' and more' if len(differing) > 3 else ''}; use another --output, or delete that run"
        )
    check_same_method(payload, str(run.path))
    check_same_data(payload, data.fingerprint() if isinstance(data, ReidSplits) else None, str(run.path))
    check_same_teachers(payload, config.teacher, str(run.path))
    return payload


def teacher_fingerprints(specs: list[str]) -> list[str]:
    """A hash of the weights each teacher spec ("PATH" or "PATH:k") names, as its file holds them
    now: the path alone does not say which teacher a run distilled from."""
    from ..files import state_fingerprint
    from .trained import TrainedRun, teacher_model

    return [state_fingerprint(TrainedRun(path).state(k)) for path, k in map(teacher_model, specs)]


def check_same_teachers(payload: dict[str, Any], specs: list[str], where: str) -> None:
    """ConfigError unless the run at `where` distilled from the teachers' weights its files hold
    now (a teacher retrained at the same path makes it another run)."""
    if not specs:
        return
    recorded = payload.get("teachers")
    if recorded is None:
        raise ConfigError(
            f"{where} recorded no fingerprint of its teachers (it was trained before they were kept), so "
            "it cannot be told to have distilled from the files there now; use another --output, or "
            "delete that run"
        )
    try:
        now = teacher_fingerprints(specs)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{where} distilled from teachers that cannot be read now ({error}); use another --output, or "
            "delete that run"
        ) from None
    changed = [spec for spec, old, new in zip(specs, recorded, now, strict=False) if old != new]
    if changed or len(recorded) != len(now):
        raise ConfigError(
            f"{where} distilled from other weights than teacher {(changed or specs)[0]} holds now (retrained "
            "since?); use another --output, or delete that run"
        )


def finish_run(
    config: TrainConfig,
    data: ReidSplits | ClassificationData,
    log: Callable[[str], None] = print,
    label: str = "",
) -> tuple[dict[str, Any], str]:
    """Carry the run in `config.output` to `config.epochs`: reuse it if it has finished, resume it
    from its checkpoint if it was interrupted, else train it in a new folder, once
    `check_run_folder` allows it. Returns (metrics.json, what was done). `label` goes before
    the trainer's progress lines."""
    import torch

    from .trainer import Trainer, threads_warning

    run = RunDir(config.output)
    payload = check_run_folder(config, data)
    if payload is None:
        trainer = Trainer(config, data, run.path, log=log, plan=preflight(config, data=False), label=label)
        trainer.fit()
        return trainer.metrics_file(), "trained"
    metrics = run.read_metrics()
    if payload["epoch"] == config.epochs and metrics and metrics.get("final"):
        threads = metrics.get("intra_op_threads")
        if config.deterministic and threads not in (None, torch.get_num_threads()):
            log(threads_warning(threads, "was trained"))
        return metrics, "reused"
    trainer = Trainer(config, data, run.path, log=log, plan=preflight(config, data=False), label=label)
    trainer.load_state(payload)
    trainer.fit()
    return trainer.metrics_file(), f"resumed after epoch {payload['epoch']}"


def start_run(
    config: TrainConfig,
    *,
    payload: dict[str, Any] | None = None,
    group: OneModelPerProcess | None = None,
    log: Callable[[str], None] = print,
) -> Trainer:
    """A run ready to `fit`: the preflight (under torchrun, rank 0's first, so that it alone
    fetches the weights), the data loaded (and checked against the run's record when resuming
    `payload`), the trainer built and its state loaded; it says what it will run. Its folder,
    `config.output`, was checked by the caller (new, or the resumed run's)."""
    from ..data import REID

    if group is not None:
        from .distributed import check_distributed, leader_decides

        check_distributed(config)
        leader_decides(lambda: preflight(config) and None)
    plan = preflight(config)
    log(f"initial weights: {plan.weights.description}")
    if plan.task == REID and config.dataset != "synthetic" and plan.weights.source is None:
        log(f"note: {config.arch} starts from random weights; the papers' numbers assume ImageNet's")
    data = load_data(config, log=log)
    if payload is not None:
        check_same_data(payload, data.fingerprint() if isinstance(data, ReidSplits) else None, config.output)
    from .trainer import Trainer

    trainer = Trainer(config, data, Path(config.output), log=log, group=group, plan=plan)
    if payload is not None:
        trainer.load_state(payload)
        log(f"resuming {config.output} after epoch {trainer.epoch}, to epoch {config.epochs}")
    log(describe(config, trainer, distributed=group is not None))
    return trainer


def describe(config: TrainConfig, trainer: Trainer, distributed: bool = False) -> str:
    """`2 x mobilenetv2_x1_0 (grafted), initial lr 0.0003, 0.00015; run: runs/...`."""
    from ..population.registry import describe_run

    mode = describe_run(config)
    if distributed:
        where = "one per process over torch.distributed"
        return f"{config.models} x {config.arch} ({mode}), {where}; run: {config.output}"
    rates = ", ".join(f"{m.initial_lr:.3g}" for m in trainer.members)
    return f"{config.models} x {config.arch} ({mode}), initial lr {rates}; run: {config.output}"


def default_output(config: TrainConfig) -> str:
    """runs/<dataset>-<arch>-k<K>[-<method>]-<date>-<time>: a new run's folder when none is given."""
    import time

    from ..population.registry import run_suffix

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{config.dataset}-{config.arch}-k{config.models}{run_suffix(config)}-{stamp}")


def train(
    recipe: str | Path | TrainConfig | None = None, *, log: Callable[[str], None] = print, **settings: Any
):
    """Train a new run and return it as a `TrainedRun` (its models, metrics and config), as
    `reidgraft-train` does: `recipe` is a shipped recipe's name, a YAML file, a `TrainConfig`, or
    None (the recipe registered for `dataset` and `arch`); `settings` are config fields over it
    (`models=2, epochs=4, root="data", output="runs/mine"`). What the run says goes to `log`.

        run = reidgraft.train("cuhk01_mobilenetv2", root="data", models=2, output="runs/cuhk01")
        print(run.metrics["final"])          # per model: mAP, rank-1, ...
        extractor = reidgraft.FeatureExtractor(run)

    A `TrainConfig` is trained as it is (`reidgraft.resolve_config(...).config` makes one as the
    command would, ImageNet weights included); the caller's object is not changed. Bad settings
    are ConfigError (a ValueError) and missing data DataMissingError (a FileNotFoundError), one
    line each, before any work; the output folder is refused if it holds a run or someone
    else's files."""
    from ..config import resolve_config
    from .trained import TrainedRun

    if isinstance(recipe, TrainConfig):
        if settings:
            raise ConfigError("give a TrainConfig or settings, not both: build_config(config.to_dict(), ...)")
        config, lines = dataclasses.replace(recipe), []
    else:
        found = resolve_config(recipe, **settings)
        config, lines = found.config, found.lines()
    for line in lines:
        log(line)
    config.output = config.output or default_output(config)
    RunDir(config.output).check_new()
    start_run(config, log=log).fit()
    return TrainedRun(config.output)
