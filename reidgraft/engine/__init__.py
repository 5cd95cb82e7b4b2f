"""The trainer: K models in lockstep, grafted at each epoch end; checkpoints and run files."""

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .trainer import METRIC_KEYS, Trainer

__all__ = ["CHECKPOINT_NAME", "METRIC_KEYS", "Trainer", "load_checkpoint"]
