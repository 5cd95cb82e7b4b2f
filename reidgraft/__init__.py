"""reidgraft: person re-identification with filter grafting.

`reidgraft.FeatureExtractor(run_dir)` turns a trained run into a function from images to
features (`extractor.py`); it is imported on first use, so `import reidgraft` stays light."""

__version__ = "0.1.0"
__all__ = ["FeatureExtractor"]


def __getattr__(name: str):
    if name == "FeatureExtractor":
        from .extractor import FeatureExtractor

        return FeatureExtractor
    raise AttributeError(f"module 'reidgraft' has no attribute {name!r}")
