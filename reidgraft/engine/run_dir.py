"""The run folder, and the one place that knows its layout and its rules.

    RUN/.reidgraft-run          marker: reidgraft made this folder (runs from before it have none)
    RUN/config.yaml             the resolved recipe
    RUN/metrics.json            every epoch's record, final and best metrics (written by rank 0)
    RUN/checkpoint.pt           an in-process run: all K models, optimizers, RNG states, history
    RUN/rank<k>/checkpoint.pt   a distributed run: model k, written by process k, which also keeps
    RUN/rank<k>/checkpoint-previous.pt    the epoch before (a rank may finish one its peers never save)
    RUN/tensorboard/            TensorBoard events
    RUN/compare-scores-*.npz    per-query scores kept by reidgraft-compare, keyed by the models

It also holds the resume policy (which settings identify a run, which may change when it
continues) and merges a distributed run's ranks into one run of K models.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, TrainConfig, build_config, current_names, identity_fields, resumable_fields
from ..files import atomic_write_json, atomic_write_text, check_writable, writer_alive
from .checkpoint import read_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint-previous.pt"
METRICS_NAME = "metrics.json"
CONFIG_NAME = "config.yaml"
MARKER_NAME = ".reidgraft-run"
LOCK_NAME = ".reidgraft-run.lock"  # held (flock) by the process training the run; holds its pid

# The version of what training produces from a config: bump it when a change to the code alters
# the weights a recipe trains to (not for speed-ups that keep them), so that runs and kept scores
# of the older code are never reused or resumed as if this code had made them. A run saved before
# versions were recorded reads as version 1.
METHOD_VERSION = 1

# The resume policy comes from each config field's role (config/schema.py): a run's identity
# never changes; what may change when it continues is `resumable`; everything else stays.
IDENTITY = tuple(identity_fields())
RESUMABLE = resumable_fields()


class RunDir:
    """A run folder (a path to a checkpoint file in it is taken as the folder)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.given = path
        self.path = path.parent if path.name == CHECKPOINT_NAME or path.is_file() else path

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ paths

    def folder(self, rank: int | None = None) -> Path:
        """Where a process keeps its checkpoint: the run folder, or `rank<k>/` in a distributed run."""
        return self.path if rank is None else self.path / f"rank{rank}"

    def checkpoint(self, rank: int | None = None) -> Path:
        return self.folder(rank) / CHECKPOINT_NAME

    def previous_checkpoint(self, rank: int) -> Path:
        return self.folder(rank) / PREVIOUS_CHECKPOINT_NAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def scores_cache(self, what: str) -> Path:
        """Where reidgraft-compare keeps the per-item scores of `what` (the run's models, or a
        baseline built from them)."""
        return self.path / f"compare-scores-{what}.npz"

    @property
    def marker(self) -> Path:
        return self.path / MARKER_NAME

    # ------------------------------------------------------------------ what the folder holds

    @property
    def is_distributed(self) -> bool:
        """One checkpoint per rank and none for the whole run."""
        return not self.checkpoint().exists() and self.checkpoint(0).exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint().exists() or self.checkpoint(0).exists()

    def is_ours(self) -> bool:
        """reidgraft made this folder: it has the marker, or a checkpoint (runs older than the marker)."""
        return self.marker.is_file() or self.has_checkpoint()

    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json, or None when it is missing or unreadable."""
        try:
            return json.loads(self.metrics.read_text())
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ writing

    def check_new(self) -> None:
        """May a new run be written here? Not into a folder that holds a run already, nor into one
        that is not empty and not ours (nothing a user made is written into). Creates nothing: the
        trainer makes the folder (`mark`) once the data has loaded."""
        self.check_unlocked()  # its first epoch may still be running
        if self.has_checkpoint():
            raise ConfigError(
                f"{self.path} already holds a run; continue it with --resume {self.path} "
                "or choose another --output"
            )
        if self.given.is_file():  # (read as its folder everywhere else)
            raise ConfigError(f"--output {self.given} is a file, not a run folder; choose another --output")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file, not a run folder; choose another --output")
        try:
            check_writable(self.path)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        if self.path.is_dir() and any(self.path.iterdir()) and not self.is_ours():
            raise ConfigError(
                f"{self.path} is not empty and is not a reidgraft run; choose another --output "
                "(reidgraft writes only into folders it made)"
            )

    # ------------------------------------------------------------------ the lock

    def check_unlocked(self) -> None:
        """ConfigError (one line) when another process is training this run now."""
        path = self.path / LOCK_NAME
        try:
            probe = open(path)
        except OSError:  # no lock file, or no folder: nothing trains here (later checks say why)
            return
        with probe:
            try:  # a shared lock: probing never keeps a trainer from taking its exclusive one
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                self._refuse(probe.read().strip())

    def _refuse(self, holder: str) -> None:
        raise ConfigError(
            f"{self.path} is being trained by process {holder or 'another process'} now; wait for it "
            "to end, or choose another --output"
        )

    def lock(self) -> None:
        """Hold the run's advisory lock while training (released by `unlock` or at exit)."""
        path = self.path / LOCK_NAME
        for _ in range(20):  # (a prober's shared lock lasts a moment)
            handle = open(path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:  # a shared lock is free unless a trainer holds the exclusive one
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip()
                    handle.close()
                    self._refuse(holder)
                handle.close()  # only probers: try again
                time.sleep(0.05)
                continue
            if path.exists() and os.fstat(handle.fileno()).st_ino == path.stat().st_ino:
                break  # (not a file another process's unlock has just removed)
            handle.close()
        else:
            self._refuse("")
        self._lock = handle
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()

    def unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            lock.close()
            self._lock = None

    def mark(self, clean: bool = True) -> None:
        """Create the folder (if needed) with the marker that says reidgraft made it, and, with
        `clean` (the leader of a distributed run only: a rank on another machine cannot see
        whether a peer's write is in progress), clear what an interrupted write left behind."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists():
            atomic_write_text(self.marker, "reidgraft run folder\n")
        if clean:
            self.remove_leftovers()

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of writes that a kill -9 interrupted (`.checkpoint.pt.*.tmp`
        and the like, see `files.atomic_write`); only our own files' names are touched, and never
        a write whose process still runs (another rank's config, this process's own)."""
        names = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME, MARKER_NAME)
        folders = [self.path, *sorted(self.path.glob("rank*"))]
        removed = [
            leftover
            for folder in folders
            for name in names
            for leftover in folder.glob(f".{name}.*.tmp")
            if leftover.is_file() and not writer_alive(leftover)
        ]
        for leftover in removed:
            leftover.unlink(missing_ok=True)
        return removed

    def write_config(self, config: TrainConfig) -> None:
        atomic_write_text(self.config_file, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.metrics, metrics)

    def save(self, payload: dict[str, Any], rank: int | None = None) -> None:
        """This process's checkpoint. A rank first keeps its last one as the previous: it may have
        finished an epoch that a peer never saved, and a resume needs the epoch they all saved."""
        path = self.checkpoint(rank)
        if rank is not None and path.exists():
            os.replace(path, self.previous_checkpoint(rank))
        save_checkpoint(path, payload)

    # ------------------------------------------------------------------ reading

    def load(self) -> dict[str, Any]:
        """The run's checkpoint; a distributed run's ranks merged into one run of K models."""
        if self.is_distributed:
            return self.merged_ranks()
        return read_checkpoint(self.checkpoint())

    def merged_ranks(self) -> dict[str, Any]:
        """Every rank's model of a distributed run, from the epoch they all saved last (`"ranks"`
        says the payload was merged; it can be evaluated and analysed, not resumed in one process)."""
        payloads = [read_checkpoint(folder / CHECKPOINT_NAME) for folder in sorted(self.path.glob("rank*"))]
        return merge_rank_payloads(payloads, str(self.path))

    def latest_checkpoint(self, rank: int) -> Path:
        """This rank's newest complete checkpoint (the previous one when it stopped between keeping
        it and writing the next)."""
        latest, previous = self.checkpoint(rank), self.previous_checkpoint(rank)
        return previous if not latest.is_file() and previous.is_file() else latest

    def rank_checkpoint_at(self, rank: int, agree_on_epoch: Callable[[int], int]) -> Path:
        """This rank's checkpoint of the last epoch every rank saved; `agree_on_epoch` takes this
        rank's latest epoch and returns the smallest over the ranks."""
        latest = self.latest_checkpoint(rank)
        epoch = read_checkpoint(latest)["epoch"]
        common = agree_on_epoch(epoch)
        if epoch == common:
            return latest
        previous = self.previous_checkpoint(rank)
        if previous.is_file() and read_checkpoint(previous)["epoch"] == common:
            return previous
        raise ConfigError(f"rank {rank} has no checkpoint of epoch {common}, the last one every rank saved")

    # ------------------------------------------------------------------ resuming

    def resume_payload(
        self, rank: int | None = None, agree_on_epoch: Callable[[int], int] | None = None
    ) -> dict[str, Any]:
        """The checkpoint a resume starts from: the run's, or this rank's of the common epoch."""
        self.check_unlocked()
        if rank is None:
            payload = self.load()
            if payload.get("ranks"):
                raise ConfigError(
                    f"{self.path} is a distributed run; resume it under torchrun with --distributed "
                    f"({payload['ranks']} processes)"
                )
            return payload
        return read_checkpoint(self.rank_checkpoint_at(rank, agree_on_epoch))

    def resume_config(self, payload: dict[str, Any], given: dict[str, Any]) -> TrainConfig:
        """The config a run continues with: the saved one, with the changes `given` asks for that
        the policy allows. ConfigError for a change of identity or of any other setting."""
        saved = payload["config"]
        check_same_method(payload, str(self.path))
        check_resume(saved, given, str(self.path))
        config = build_config(saved, **{name: value for name, value in given.items() if name in RESUMABLE})
        config.output = str(self.path)
        if config.epochs < payload["epoch"]:
            raise ConfigError(f"{self.path} has already trained {payload['epoch']} epochs; ask for more")
        return config


def check_resume(saved: dict[str, Any], given: dict[str, Any], where: str) -> None:
    """The resume policy: the identity never changes, other settings only when RESUMABLE."""
    saved = current_names(saved)
    for name in IDENTITY:
        if name in given and given[name] != saved[name]:
            raise ConfigError(
                f"cannot resume {where} with {name} {given[name]!r}: that run trained "
                f"{name} {saved[name]!r}; start a new run instead"
            )
    changed = sorted(n for n in set(given) - RESUMABLE - set(IDENTITY) if given[n] != saved.get(n))
    if changed:
        raise ConfigError(
            f"cannot change {changed[0]} when resuming {where} (it was {saved.get(changed[0])!r}); "
            f"only {', '.join(sorted(RESUMABLE))} may change"
        )


def method_version(payload: dict[str, Any]) -> int:
    """The method version a checkpoint (or metrics.json) was trained by; 1 when not recorded."""
    return int(payload.get("method_version") or 1)


def check_same_method(payload: dict[str, Any], where: str) -> None:
    """ConfigError unless the run at `where` was trained by this code's METHOD_VERSION, and is
    not one of the few whose epoch ends were numbered otherwise (`renumbered`)."""
    version = method_version(payload)
    if version != METHOD_VERSION:
        raise ConfigError(
            f"{where} was trained by version {version} of reidgraft's training method, this is "
            f"version {METHOD_VERSION}: its weights are not what this version trains; use another "
            "--output, or delete that run"
        )
    what = renumbered(payload)
    if what:
        raise ConfigError(
            f"{where} was trained with eval_after_graft and {what} before an epoch end was numbered "
            "by the epochs completed on both orders: its weights are not what this version trains; use "
            "another --output, or delete that run"
        )


def renumbered(payload: dict[str, Any]) -> str | None:
    """What numbered a format 1 run's epoch ends otherwise than this code: with eval_after_graft an
    exchange after epoch e was numbered e - 1, which the noise scion's noise and PAPA's random
    pairs (of more than two models) read. (Every other run trains as it did: no version bump, so
    they are reused and resumed.) None when nothing did."""
    config = current_names(payload.get("config") or {})
    if payload.get("format", 1) >= 2 or not config.get("eval_after_graft"):
        return None
    models, population = config.get("models", 1), config.get("population", "graft")
    if population == "graft" and config.get("scion") == "noise" and models > 1:
        return "the noise scion"
    if population == "papa" and config.get("papa_mode") == "pairs" and models > 2:
        return "PAPA pairs"
    return None


def check_same_data(payload: dict[str, Any], found: dict[str, Any] | None, where: str) -> None:
    """ConfigError unless the run at `where` recorded the data fingerprint `found` (a run or data
    without one, such as classification sets, is not checked)."""
    from ..data.registry import data_difference

    recorded = payload.get("data")
    if recorded and found and recorded != found:
        raise ConfigError(
            f"{where} was trained on other data than this: {data_difference(found, recorded)}; "
            "point --root at that run's data, or use another --output"
        )


def merge_rank_payloads(payloads: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """One payload of K models from the K ranks' checkpoints (in any order) of one epoch."""
    if not payloads:
        raise ValueError(f"{where} holds no rank checkpoints")
    payloads = sorted(payloads, key=lambda payload: payload.get("model_ids", [0])[0])
    count = payloads[0]["config"]["models"]
    ids = [payload.get("model_ids", [None])[0] for payload in payloads]
    if ids != list(range(count)):
        raise ValueError(
            f"{where} holds the checkpoints of models {ids}; a run of {count} needs 0..{count - 1}"
        )
    epochs = {payload["epoch"] for payload in payloads}
    if len(epochs) > 1:
        raise ValueError(
            f"the ranks of {where} saved different epochs {sorted(epochs)}; resume the run first"
        )
    merged = {
        key: payloads[0][key] for key in ("format", "task", "config", "num_classes", "epoch", "history")
    }
    merged |= {key: payloads[0][key] for key in ("method_version", "data", "teachers") if key in payloads[0]}
    return {**merged, "models": [payload["models"][0] for payload in payloads], "ranks": count}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A reidgraft checkpoint file, or a run folder's checkpoint (a distributed run's ranks merged),
    loaded on the CPU; ValueError naming the path when there is none."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if not run.has_checkpoint():
            raise ValueError(f"no checkpoint at {run.checkpoint()}")
        return run.load()
    return read_checkpoint(path)
