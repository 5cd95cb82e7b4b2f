"""Training and everything that reads a run: the trainer (K models in lockstep, grafted at each
epoch end), the run folder and its checkpoints, `TrainedRun` (the one reader of a finished run),
the preflight, and the comparison.

Names are loaded from their module on first use (PEP 562): `from reidgraft.engine.trained
import TrainedRun`, which `FeatureExtractor` does, loads no training code."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CHECKPOINT_NAME": "run_dir",
    "RunDir": "run_dir",
    "load_checkpoint": "run_dir",
    "METRIC_KEYS": "trainer",
    "Trainer": "trainer",
    "TrainedRun": "trained",
    "Plan": "preflight",
    "preflight": "preflight",
    "train": "runs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
