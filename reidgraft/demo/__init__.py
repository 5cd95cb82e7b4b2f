"""The gallery-search demo: query a gallery with a trained (grafted) model in the browser.

Its parts, bottom up: `gallery.py` (a dataset's gallery split or any folder of images),
`model.py` (one model of a run, as a `FeatureExtractor` of evaluation's features), `cache.py`
(the gallery's FAISS index, cached in the run folder and built resumably), `search.py` (one
query: nearest images, verdicts, the evaluator's AP) and `page.py` (the Gradio page). `app.py` is
the command.
"""

import os

# Gradio reports usage to a server unless told not to; this machine and many users' have no network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from .cache import CACHE_FOLDER, SAVE_EVERY_SECONDS, extract_resumably, gallery_index  # noqa: E402
from .gallery import (  # noqa: E402
    DEFAULT_RUNS,
    DemoError,
    Gallery,
    dataset_gallery,
    folder_gallery,
    newest_run,
    parse_market_name,
    resolve_gallery,
)
from .model import RunModel, load_run_model  # noqa: E402
from .page import PAGE_CSS, build_app, launch  # noqa: E402
from .search import GallerySearch, Hit, SearchResult, answer_query, read_query  # noqa: E402

__all__ = [
    "CACHE_FOLDER",
    "DEFAULT_RUNS",
    "PAGE_CSS",
    "SAVE_EVERY_SECONDS",
    "DemoError",
    "Gallery",
    "GallerySearch",
    "Hit",
    "RunModel",
    "SearchResult",
    "answer_query",
    "build_app",
    "dataset_gallery",
    "extract_resumably",
    "folder_gallery",
    "gallery_index",
    "launch",
    "load_run_model",
    "newest_run",
    "parse_market_name",
    "read_query",
    "resolve_gallery",
]
