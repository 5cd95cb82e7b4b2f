"""`--population none`: K models trained independently, at the same per-model learning rates as
a grafted run (the fair baseline)."""

from __future__ import annotations

from typing import Any

from .participant import Participant


def build(models: list, config: Any, group: Any) -> Participant:
    return Participant()
