"""reidgraft: person re-identification with filter grafting.

    run = reidgraft.train("cuhk01_mobilenetv2", root="data", models=2)   # a TrainedRun
    extractor = reidgraft.FeatureExtractor(run)                          # images -> features

`train` trains as `reidgraft-train` does (`engine/runs.py`), `resolve_config` gives the config
it would use (`config/recipes.py`), `TrainedRun` reads a finished run and `FeatureExtractor`
turns one into a function from images to features (`extractor.py`). Each is imported on first
use, so `import reidgraft` stays light (and `FeatureExtractor` loads no training code)."""

__version__ = "0.1.0"
_EXPORTS = {
    "FeatureExtractor": "reidgraft.extractor",
    "train": "reidgraft.engine.runs",
    "resolve_config": "reidgraft.config.recipes",
    "TrainedRun": "reidgraft.engine.trained",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # (not reidgraft.lazy's helper: importing one part, such as reidgraft.grafting, loads no other)
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reidgraft' has no attribute {name!r}")
