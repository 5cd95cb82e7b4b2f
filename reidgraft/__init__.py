"""reidgraft: person re-identification with filter grafting."""

__version__ = "0.1.0"
