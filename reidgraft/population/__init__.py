"""What K models trained side by side exchange, each method a registered participant of one
lifecycle (`participant.Participant`, `registry.POPULATIONS`): nothing, a graft at epoch ends
(through `reidgraft.grafting`), deep mutual learning's loss term each step, or PAPA's pull
toward the population mean; plus EMA copies of any model (a companion). Depends on torch and
`reidgraft.grafting` only. See docs/method.md section 10.

Names are loaded from their module on first use (PEP 562), so that the config, which reads
`options` and `registry` alone, does not load the methods and the grafting machinery behind them.
"""

from __future__ import annotations

import importlib

# public name -> the module of this package that defines it
_EXPORTS = {
    "PAPA_MODES": "options",
    "COMPANIONS": "registry",
    "POPULATIONS": "registry",
    "PopulationSpec": "registry",
    "build_participants": "registry",
    "BN_IMAGES": "averaging",
    "average_into_": "averaging",
    "mean_of": "averaging",
    "reestimate_batch_norm": "averaging",
    "weight_average": "averaging",
    "Participant": "participant",
    "mutual_loss": "dml",
    "MutualLearning": "dml",
    "EmaCopies": "ema",
    "Graft": "graft",
    "PopulationAveraging": "papa",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # found once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
