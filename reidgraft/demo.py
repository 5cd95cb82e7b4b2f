"""The gallery-search demo's parts: a run's model, a gallery of images, its cached FAISS index,
the search that answers one query image, and the Gradio page around it (`app.py` is the CLI).

A gallery is a dataset's gallery split or any folder of images. Market-1501-style names
(`0002_c1s1_000451_03.jpg`) give an image's person id and camera; other names are shown
without them. Features are extracted once per (model, gallery content) and cached next to the
run's checkpoint, so the next start only reads the index back.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torch import nn

from .data import REID, dataset_names, load_reid_dataset, load_run_splits
from .data.loaders import reid_transforms
from .device import autocast
from .engine import RunDir, load_checkpoint
from .engine.features import extract_features
from .extractor import chosen_model
from .files import read_keyed_arrays, write_keyed_arrays
from .index import (
    KINDS,
    GalleryIndex,
    files_fingerprint,
    index_key,
    load_gallery_cache,
    save_gallery_cache,
    state_fingerprint,
)
from .models import backbone_spec
from .models.reid_head import build_reid_model, head_options

# Gradio reports usage to a server unless told not to; this machine and many users' have no network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
CACHE_FOLDER = "gallery_cache"
DEFAULT_RUNS = Path("runs")
README_MAIN_JOB = "bash scripts/setup.sh && .venv/bin/python tools/train.py"

# Result frames (RGB): a true match, another person, the query's person under its own camera
# (which the Market-1501 protocol ignores).
MATCH_COLOUR, MISMATCH_COLOUR, SAME_CAMERA_COLOUR = (0, 170, 0), (215, 0, 0), (70, 70, 70)
FRAME = 4
THUMBNAIL_HEIGHT = 160


# Gradio cuts gallery captions to one line; ours carry rank, distance, pid and camera.
PAGE_CSS = ".caption-label { white-space: normal !important; overflow: visible !important; }"


class DemoError(ValueError):
    """Bad input to the demo (a run, a gallery, an upload); the message says what and how to fix it."""


def parse_market_name(name: str) -> tuple[int | None, int | None]:
    """(pid, 0-based camera) from a Market-1501-style file name, or (None, None) for other names."""
    found = MARKET_NAME.match(Path(name).name)
    if found is None or int(found.group(2)) < 1:
        return None, None
    return int(found.group(1)), int(found.group(2)) - 1


@dataclass(frozen=True)
class Gallery:
    """The images to search, in a fixed order; `pids`/`camids` are None where the name says nothing."""

    label: str
    root: Path
    paths: list[str]
    pids: list[int | None]
    camids: list[int | None]
    example_queries: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def name_of(self, index: int) -> str:
        path = Path(self.paths[index])
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.name


def folder_gallery(folder: str | Path) -> Gallery:
    """Every image under `folder` (recursively, sorted by path)."""
    root = Path(folder)
    if not root.is_dir():
        raise DemoError(f"gallery folder {root} does not exist")
    paths = sorted(
        str(path) for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if not paths:
        raise DemoError(f"gallery folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    labels = [parse_market_name(path) for path in paths]
    return Gallery(str(root), root, paths, [p for p, _ in labels], [c for _, c in labels])


def dataset_gallery(
    name: str, root: str | Path, examples: int = 8, run: RunModel | None = None, options: dict | None = None
) -> Gallery:
    """A dataset's gallery split, with query images of different people, each with a match from
    another camera in the gallery, as examples. With the `run` it was trained on, the data must
    be what that run recorded. `options`: the run's config, for datasets with variants (cuhk03)."""
    if run is None:
        splits = load_reid_dataset(name, root, options=options)
    else:
        try:
            splits = load_run_splits(name, root, run.data, str(run.run_dir), options=options)
        except ValueError as error:
            raise DemoError(str(error)) from None
    gallery_root = Path(os.path.commonpath([path for path, _, _ in splits.gallery]))
    cameras_of: dict[int, set[int]] = {}
    for _, pid, camid in splits.gallery:
        cameras_of.setdefault(pid, set()).add(camid)
    chosen, seen = [], set()
    for path, pid, camid in splits.query:
        if pid not in seen and cameras_of.get(pid, set()) - {camid}:
            chosen.append(path)
            seen.add(pid)
        if len(chosen) == examples:
            break
    return Gallery(
        name,
        gallery_root,
        [path for path, _, _ in splits.gallery],
        [pid for _, pid, _ in splits.gallery],
        [camid for _, _, camid in splits.gallery],
        chosen,
    )


def resolve_gallery(gallery: str | None, config: dict, run: RunModel | None = None) -> Gallery:
    """`gallery` as a dataset name or a folder; by default the run's own dataset (which must
    then be the data `run` recorded)."""
    gallery = gallery or config["dataset"]
    if gallery in dataset_names(REID):
        own = run if gallery == config["dataset"] else None
        return dataset_gallery(gallery, config["root"], run=own, options=config)
    if Path(gallery).is_dir():
        return folder_gallery(gallery)
    raise DemoError(
        f"--gallery {gallery!r} is neither a re-ID dataset ({', '.join(dataset_names(REID))}) "
        "nor an existing folder"
    )


def newest_run(runs: str | Path = DEFAULT_RUNS) -> Path:
    """The run folder under `runs` whose checkpoint was written last."""
    folders = [RunDir(path) for path in Path(runs).glob("*") if path.is_dir()]
    checkpoints = [
        run.checkpoint(0 if run.is_distributed else None) for run in folders if run.has_checkpoint()
    ]
    if not checkpoints:
        raise DemoError(f"no trained run under {Path(runs)}/; make one with: {README_MAIN_JOB}")
    return RunDir(max(checkpoints, key=lambda path: path.stat().st_mtime)).path


@dataclass
class RunModel:
    """One model of a training run, ready to embed images."""

    run_dir: Path
    k: int
    arch: str
    height: int
    width: int
    metric: str
    model: nn.Module
    device: torch.device
    fingerprint: str
    amp: str = "none"  # autocast for embedding (resolved: none, bf16 or fp16)
    data: dict | None = None  # what the run recorded about its data (`ReidSplits.fingerprint`)

    @property
    def label(self) -> str:
        return f"model {self.k} of {self.run_dir.name} ({self.arch})"


def load_run_model(
    run_dir: str | Path, k: int | None, device: torch.device, amp: str = "none"
) -> tuple[RunModel, dict]:
    """Model k of a run (default: the one it recommends, as FeatureExtractor: the best of K on
    validation, else model 0, never a choice made on the test set), loaded weights-only, embedding under
    `amp` autocast (`auto`: the measured default for its arch on `device`); and the run's config."""
    run_dir = RunDir(run_dir).path
    payload = load_checkpoint(run_dir)
    config, states = payload["config"], payload["models"]
    if payload.get("task", "reid") != "reid":
        raise DemoError(f"{run_dir} is a {payload['task']} run; the demo searches with re-ID models")
    if k is None:
        k, _ = chosen_model(run_dir, len(states))
    if not 0 <= k < len(states):
        raise DemoError(f"--model {k}: the run {run_dir} has models 0..{len(states) - 1}")
    model = build_reid_model(config["arch"], payload["num_classes"], **head_options(config))
    model.load_state_dict(states[k])
    model.to(device).eval()
    try:
        amp, _ = backbone_spec(config["arch"]).precision(
            amp, None, device, (config["height"], config["width"])
        )
    except ValueError as error:
        raise DemoError(str(error)) from None
    shape = (config["arch"], config["height"], config["width"], config["metric"])
    # features under autocast differ from fp32 ones in the last bits: another cache entry
    fingerprint = state_fingerprint(states[k], extra=shape if amp == "none" else (*shape, amp))
    run_model = RunModel(
        run_dir, k, *shape, model=model, device=device, fingerprint=fingerprint, amp=amp,
        data=payload.get("data"),
    )  # fmt: skip
    return run_model, config


def gallery_index(
    run_model: RunModel, gallery: Gallery, *, batch_size: int = 64, workers: int = 0, kind: str = "auto"
) -> tuple[GalleryIndex, bool]:
    """The gallery's FAISS index of `kind` for this model, read from the run's cache when the model,
    every image and the index kind are unchanged, else extracted (progress bar) and cached.
    Returns (index, was cached)."""
    if kind not in KINDS:
        raise DemoError(f"unknown index kind {kind!r}; choose one of: {', '.join(KINDS)}")
    files = files_fingerprint(gallery.paths, gallery.root)
    features_key = hashlib.blake2b(f"{run_model.fingerprint}\0{files}".encode(), digest_size=20).hexdigest()
    key = hashlib.blake2b(f"{features_key}\0{index_key(kind)}".encode(), digest_size=20).hexdigest()
    folder = run_model.run_dir / CACHE_FOLDER
    cache = folder / f"model{run_model.k}-{key[:16]}.npz"
    cached = load_gallery_cache(cache, key)
    if cached is not None:
        return cached[0], True
    # the features do not depend on the index kind: an extraction stopped under one kind
    # resumes under another
    partial = folder / f"model{run_model.k}-{features_key[:16]}.partial.npz"
    features = extract_resumably(run_model, gallery, partial, features_key, batch_size, workers)
    index = GalleryIndex(features, run_model.metric, kind=kind)
    save_gallery_cache(cache, index, [gallery.name_of(i) for i in range(len(gallery))], key)
    partial.unlink(missing_ok=True)
    return index, False


SAVE_EVERY_SECONDS = 30.0  # an interrupted indexing loses at most about this much work


def extract_resumably(
    run_model: RunModel, gallery: Gallery, partial: Path, key: str, batch_size: int, workers: int
) -> np.ndarray:
    """The gallery's features, extracted in chunks of batches with one progress bar; the rows
    done so far are saved to `partial` every SAVE_EVERY_SECONDS, so an interrupted extraction
    (Ctrl-C, a crash) restarts where it stopped. A partial file of another key is ignored."""
    import time

    from tqdm import tqdm

    done = _read_partial(partial, key)
    total = len(gallery.paths)
    chunk = batch_size * 8
    partial.parent.mkdir(parents=True, exist_ok=True)
    saved_at = time.monotonic()
    with tqdm(total=total, initial=len(done), desc=f"indexing {total} gallery images", disable=None) as bar:
        parts = [done] if len(done) else []
        position = len(done)
        while position < total:
            items = [(path, 0, 0) for path in gallery.paths[position : position + chunk]]
            (features,) = extract_features(
                [run_model.model], items, height=run_model.height, width=run_model.width,
                batch_size=batch_size, workers=workers, amp=run_model.amp, what="",
            )  # fmt: skip
            parts.append(features.cpu().numpy())
            position += len(items)
            bar.update(len(items))
            if position < total and time.monotonic() - saved_at >= SAVE_EVERY_SECONDS:
                _write_partial(partial, key, np.concatenate(parts))
                saved_at = time.monotonic()
    return np.concatenate(parts)


def _read_partial(path: Path, key: str) -> np.ndarray:
    stored = read_keyed_arrays(path, key)
    if stored is None or "features" not in stored:
        return np.zeros((0, 0), np.float32)
    return np.asarray(stored["features"], dtype=np.float32)


def _write_partial(path: Path, key: str, features: np.ndarray) -> None:
    write_keyed_arrays(path, key, {"features": features})


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
        _, self.transform = reid_transforms(run_model.height, run_model.width, [])
        # Unknown identities (-2) never equal a query's pid or camera.
        self._gallery_pids = np.array([-2 if p is None else p for p in gallery.pids])
        self._gallery_camids = np.array([-2 if c is None else c for c in gallery.camids])
        with warnings.catch_warnings():  # a read-only view of the index's memory, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self._gallery_tensor = torch.from_numpy(index.features)
        self._gallery_squared_norms = self._gallery_tensor.pow(2).sum(dim=1)

    @torch.no_grad()
    def embed(self, image: Image.Image) -> np.ndarray:
        batch = self.transform(image).unsqueeze(0).to(self.run_model.device)
        with autocast(self.run_model.device, self.run_model.amp):
            return self.run_model.model(batch).float().cpu().numpy()

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
        return "same camera" if self.gallery.camids[index] == camid else "match"

    def _average_precision(self, features: np.ndarray, pid: int, camid: int) -> tuple[float | None, str]:
        """The query's AP over the whole gallery under the Market-1501 protocol, as the evaluator
        scores it (same-pid same-camera items removed; at equal distance a true match first).
        One matrix-vector product over the gallery: a few ms where `evaluate` would redo the
        gallery's norms and checks for every query."""
        same_pid = self._gallery_pids == pid
        matches = int(np.sum(same_pid & (self._gallery_camids != camid)))
        if matches == 0 or pid in (0, -1):
            return None, f"query pid {pid}, cam {camid + 1}: no match from another camera in the gallery"
        # In torch, on the model's thread pool: numpy's BLAS threads would fight it for the cores.
        query = torch.from_numpy(features[0].astype(np.float32))
        if self.run_model.metric == "cosine":
            query = query / query.norm().clamp_min(1e-12)
            distances = (1.0 - self._gallery_tensor @ query).numpy()
        else:
            products = self._gallery_tensor @ query
            distances = ((query @ query + self._gallery_squared_norms) - 2.0 * products).numpy()
        keep = ~(same_pid & (self._gallery_camids == camid))
        is_match = same_pid[keep]
        order = np.lexsort((~is_match, distances[keep]))
        hit_ranks = np.flatnonzero(is_match[order]) + 1
        average_precision = float(np.mean(np.arange(1, len(hit_ranks) + 1) / hit_ranks))
        note = f"query pid {pid}, cam {camid + 1}: AP {100 * average_precision:.1f}% ({matches} true matches)"
        return average_precision, note

    def caption(self, hit: Hit) -> str:
        pid, camid = self.gallery.pids[hit.index], self.gallery.camids[hit.index]
        who = f"pid {pid} cam {camid + 1}" if pid is not None else self.gallery.name_of(hit.index)
        mark = {"match": " ✓", "other": " ✗", "same camera": " (same camera)", None: ""}[hit.verdict]
        return f"#{hit.rank} d={hit.distance:.4g} {who}{mark}"

    def thumbnail(self, hit: Hit) -> Image.Image:
        """The gallery image, framed green (true match), red (someone else) or dark grey (same camera)."""
        with Image.open(self.gallery.paths[hit.index]) as opened:
            image = opened.convert("RGB")
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
    """What the page shows for one query: per model, the framed, captioned results and a note."""
    image = read_query(image_path)
    outputs: list = []
    for searcher in searchers:
        result = searcher.search(image, int(top_k), query_name=Path(image_path).name)
        outputs.append([(searcher.thumbnail(hit), searcher.caption(hit)) for hit in result.hits])
        outputs.append(result.note)
    return outputs


def build_app(
    searchers: Sequence[GallerySearch],
    examples: Sequence[str] = (),
    max_top_k: int = 50,
    cache_seconds: int = 300,
):
    """The Gradio page: a query image, a top-k slider, and one ranked gallery per model.

    The search endpoint is `api_name="search"`: inputs (image, top_k); outputs, per model, the
    result gallery (first) and a line of text (the query's AP when its identity is known).
    """
    import gradio as gr

    first = searchers[0]

    def answer(image_path: str | None, top_k: float):
        if not image_path:
            raise gr.Error("Upload a query image first (or pick an example).")
        try:
            return answer_query(searchers, image_path, top_k)
        except (DemoError, OSError) as error:
            raise _rejected(str(error), error) from None

    # Uploads and result thumbnails land in Gradio's cache folder: delete each once it is
    # `cache_seconds` old (a query is answered long before; a second click on Search needs its
    # upload for a while), and everything this app made when it shuts down.
    cleanup = (max(1, min(60, cache_seconds // 2)), cache_seconds)
    with gr.Blocks(title="reidgraft gallery search", delete_cache=cleanup) as app:
        gr.Markdown(
            f"## reidgraft gallery search\n{len(first.gallery)} gallery images from `{first.gallery.label}`. "
            "Drop a picture of a person: the nearest gallery images come back ranked, framed green "
            "when they show the query's person from another camera, dark grey under the query's own "
            "camera (the Market-1501 protocol ignores those), red otherwise. Verdicts and AP need a "
            "Market-style file name (`0002_c1s1_000451_03.jpg`)."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=220):
                query = gr.Image(type="filepath", label="query", sources=["upload", "clipboard"], height=320)
                query.preprocess = _readable_upload(query.preprocess)
                top_k = gr.Slider(1, max_top_k, value=min(10, max_top_k), step=1, label="top k")
                button = gr.Button("Search", variant="primary")
                if examples:
                    gr.Examples([[path] for path in examples], inputs=[query], label="dataset queries")
            outputs = []
            for number, searcher in enumerate(searchers):
                with gr.Column(scale=3):
                    label = searcher.run_model.label
                    outputs.append(
                        gr.Gallery(label=label, columns=5, object_fit="contain", elem_id=f"results-{number}")
                    )
                    outputs.append(gr.Markdown())
        button.click(answer, inputs=[query, top_k], outputs=outputs, api_name="search")
    return app


def _readable_upload(preprocess):
    """Wrap gr.Image.preprocess so that an upload PIL cannot read becomes a message in the page,
    not a traceback. (A gr.Image subclass would do, but Gradio writes a .pyi stub for each one.)"""
    import gradio as gr

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # PIL raises several kinds for a non-image or damaged file
            name = getattr(payload, "orig_name", None) or "the upload"
            raise _rejected(
                f"{name} is not an image that can be read; upload a JPEG or PNG file", error
            ) from None

    return checked


def _rejected(message: str, cause: Exception):
    """The page shows `message`; the server log gets one line, not Gradio's traceback."""
    import gradio as gr

    print(f"demo: rejected a query: {message} ({type(cause).__name__}: {cause})", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def launch(app, host: str, port: int) -> str:
    """Start serving on host:port only (no public share link) without blocking; returns the URL.
    `app.block_thread()` then serves until Ctrl-C, `app.close()` stops."""
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        show_error=True, quiet=True, css=PAGE_CSS,
    )  # fmt: skip
    return url
