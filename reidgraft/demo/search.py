"""The search behind the demo: a query image embedded as the gallery was, its nearest gallery
images from the FAISS index, each framed by its verdict (match, someone else, same camera), and
the query's AP as the evaluator scores it when its file name gives its identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from ..evaluation import GalleryScorer
from ..evaluation.retrieval import UNKNOWN_CAMERA, camera_label
from ..images import read_rgb
from ..index import GalleryIndex
from .gallery import DemoError, Gallery, parse_market_name
from .model import RunModel

# Result frames (RGB): a true match, another person, the query's person under its own camera
# (which the Market-1501 protocol ignores).
MATCH_COLOUR, MISMATCH_COLOUR, SAME_CAMERA_COLOUR = (0, 170, 0), (215, 0, 0), (70, 70, 70)
FRAME = 4
THUMBNAIL_HEIGHT = 160


@dataclass(frozen=True)
class Hit:
    rank: int
    index: int
    distance: float
    verdict: str | None  # "match", "other", "same camera"; None when the query's identity is unknown


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    query_pid: int | None
    query_camid: int | None
    average_precision: float | None
    note: str


def read_query(image: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """An uploaded query as RGB; DemoError when it is not an image that can be decoded."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    try:
        with Image.open(image) as opened:
            opened.load()  # decode now: a truncated file fails here, not later
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        name = Path(str(image)).name
        raise DemoError(f"{name} is not an image that can be read; upload a JPEG or PNG file") from None


class GallerySearch:
    """Answers a query image with the nearest gallery images for one model."""

    def __init__(self, run_model: RunModel, gallery: Gallery, index: GalleryIndex):
        if len(index) != len(gallery):
            raise DemoError(f"the index holds {len(index)} items, the gallery {len(gallery)}")
        self.run_model, self.gallery, self.index = run_model, gallery, index
        # Unknown identities (-2) never equal a query's pid or camera.
        self._gallery_pids = np.array([-2 if p is None else p for p in gallery.pids])
        self._gallery_camids = np.array([-2 if c is None else c for c in gallery.camids])
        self._scorer = GalleryScorer(
            index.features, self._gallery_pids, self._gallery_camids, run_model.metric
        )

    def embed(self, image: Image.Image) -> np.ndarray:
        """The query's (1, dim) features, as the gallery's were extracted."""
        return self.run_model.extractor(image)

    def search(self, image: Image.Image, top_k: int, query_name: str = "") -> SearchResult:
        """The top_k nearest gallery images; with a Market-style `query_name`, verdicts and the AP."""
        top_k = int(top_k)
        if top_k < 1:
            raise DemoError(f"top_k must be at least 1, got {top_k}")
        features = self.embed(image)
        distances, indices = self.index.search(features, top_k)
        pid, camid = parse_market_name(query_name) if query_name else (None, None)
        found = [(d, i) for d, i in zip(distances[0], indices[0]) if i >= 0]  # ivf/hnsw: -1 = none
        hits = [
            Hit(rank, int(i), float(d), self._verdict(int(i), pid, camid))
            for rank, (d, i) in enumerate(found, start=1)
        ]
        average_precision, note = None, "query identity unknown (not a Market-style file name): no AP"
        if pid is not None:
            average_precision, note = self._average_precision(features, pid, camid)
        return SearchResult(hits, pid, camid, average_precision, note)

    def _verdict(self, index: int, pid: int | None, camid: int | None) -> str | None:
        gallery_pid = self.gallery.pids[index]
        if pid is None or gallery_pid is None:
            return None
        if gallery_pid != pid or pid in (0, -1):  # distractors and junk are nobody's match
            return "other"
        same_camera = self.gallery.camids[index] == camid != UNKNOWN_CAMERA
        return "same camera" if same_camera else "match"

    def _average_precision(self, features: np.ndarray, pid: int, camid: int) -> tuple[float | None, str]:
        """The query's AP over the whole gallery under the Market-1501 protocol, exactly as the
        evaluator scores it (`GalleryScorer`: same distances, same tie order)."""
        other_camera = (self._gallery_camids != camid) | (camid == UNKNOWN_CAMERA)
        matches = int(np.sum((self._gallery_pids == pid) & other_camera))
        if matches == 0 or pid in (0, -1):
            return (
                None,
                f"query pid {pid}, {camera_label(camid)}: no match from another camera in the gallery",
            )
        (average_precision,) = self._scorer.average_precisions(features, [pid], [camid])
        plural = "true match" if matches == 1 else "true matches"
        note = (
            f"query pid {pid}, {camera_label(camid)}: AP {100 * average_precision:.1f}% ({matches} {plural})"
        )
        return float(average_precision), note

    def caption(self, hit: Hit) -> str:
        pid, camid = self.gallery.pids[hit.index], self.gallery.camids[hit.index]
        who = f"pid {pid} {camera_label(camid)}" if pid is not None else self.gallery.name_of(hit.index)
        mark = {"match": " ✓", "other": " ✗", "same camera": " (same camera)", None: ""}[hit.verdict]
        return f"#{hit.rank} d={hit.distance:.4g} {who}{mark}"

    def thumbnail(self, hit: Hit) -> Image.Image:
        """The gallery image, framed green (true match), red (someone else) or dark grey (same camera)."""
        image = read_rgb(self.gallery.paths[hit.index])
        width = max(1, round(image.width * THUMBNAIL_HEIGHT / image.height))
        image = image.resize((width, THUMBNAIL_HEIGHT), Image.Resampling.BILINEAR)
        colour = {"match": MATCH_COLOUR, "other": MISMATCH_COLOUR, "same camera": SAME_CAMERA_COLOUR}.get(
            hit.verdict
        )
        if colour is not None:
            box = (0, 0, width - 1, THUMBNAIL_HEIGHT - 1)
            ImageDraw.Draw(image).rectangle(box, outline=colour, width=FRAME)
        return image


def answer_query(searchers: Sequence[GallerySearch], image_path: str | Path, top_k: float) -> list:
    """What the page shows for one query: per model, the framed, captioned results and a note;
    last, the same results as data (`structured`), for programs calling the API."""
    image = read_query(image_path)
    outputs: list = []
    found = []
    for searcher in searchers:
        result = searcher.search(image, int(top_k), query_name=Path(image_path).name)
        outputs.append([(searcher.thumbnail(hit), searcher.caption(hit)) for hit in result.hits])
        outputs.append(result.note)
        found.append((searcher, result))
    outputs.append(structured(Path(image_path).name, found))
    return outputs


def _camera_number(camid: int | None) -> int | None:
    """A camera as the dataset numbers it (c1 is camid 0); None when unknown."""
    return None if camid is None or camid == UNKNOWN_CAMERA else camid + 1


def structured(query_name: str, found: Sequence[tuple[GallerySearch, SearchResult]]) -> dict:
    """One query's results as plain data: per model, every hit's gallery file, distance, person,
    camera (numbered as the dataset does) and whether it shows the query's person (None when
    the query's identity is unknown), with the query's AP."""
    first = found[0][1]
    return {
        "query": {"file": query_name, "pid": first.query_pid, "camera": _camera_number(first.query_camid)},
        "models": [
            {
                "model": searcher.run_model.label,
                "metric": searcher.run_model.metric,
                "average_precision": result.average_precision,
                "note": result.note,
                "results": [
                    {
                        "rank": hit.rank,
                        "gallery_file": str(searcher.gallery.paths[hit.index]),
                        "distance": hit.distance,
                        "pid": searcher.gallery.pids[hit.index],
                        "camera": _camera_number(searcher.gallery.camids[hit.index]),
                        "same_person": None if hit.verdict is None else hit.verdict != "other",
                        "verdict": hit.verdict,
                    }
                    for hit in result.hits
                ],
            }
            for searcher, result in found
        ],
    }
