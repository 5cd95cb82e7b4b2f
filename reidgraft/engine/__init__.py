"""Training and everything that reads a run: the trainer (K models in lockstep, grafted at each
epoch end), the run folder and its checkpoints, `TrainedRun` (the one reader of a finished run),
the preflight, and the comparison.

Names are loaded from their module on first use (PEP 562): `from reidgraft.engine.trained
import TrainedRun`, which `FeatureExtractor` does, loads no training code."""

from __future__ import annotations

from ..lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
