"""The trainer: K models in lockstep, grafted at each epoch end; the run folder and checkpoints."""

from .run_dir import CHECKPOINT_NAME, RunDir, load_checkpoint
from .trainer import METRIC_KEYS, Trainer

__all__ = ["CHECKPOINT_NAME", "METRIC_KEYS", "RunDir", "Trainer", "load_checkpoint"]
