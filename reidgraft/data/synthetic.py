"""A procedural pedestrian re-ID dataset, written once to disk in Market-1501 layout.

Why: tests, quick recipes and CI need a re-ID dataset that exists without a download, is
deterministic, and goes through exactly the code path real data takes. The images are drawn
here (numpy + PIL only) and saved as `<root>/market1501/Market-1501-v15.09.15/{bounding_box_train,
query,bounding_box_test}/{pid:04d}_c{cam}s1_{frame:06d}_00.jpg`, so torchreid's own
`Market1501(root=<root>)` reads them unchanged.

Identities differ in clothing colours and patterns, body proportions, hair, bags, shoes and a
front-only chest logo; every third identity is a near twin of the one before it (one subtle
attribute differs). Six cameras differ in illumination, colour cast, background, framing,
viewpoint, resolution, blur and occlusion, and every image gets its own pose and pixel noise, so
identity is learnable but far from trivial.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MARKET_FOLDER = "Market-1501-v15.09.15"
TRAIN_DIR, QUERY_DIR, GALLERY_DIR = "bounding_box_train", "query", "bounding_box_test"
MANIFEST_NAME = "synthetic.json"
# Bump when the drawing changes, so an old folder is reported instead of silently reused.
GENERATOR_VERSION = 1
NUM_CAMERAS = 6
MAX_PID = 1501  # torchreid's Market1501 asserts 0 <= pid <= 1501
JPEG_QUALITY = 90
MIN_HEIGHT, MIN_WIDTH = 32, 16  # below this a person is a few pixels and nothing is drawable
TWIN_EVERY = 3  # every third identity copies the previous one but for one subtle attribute
_TRIANGULAR_STD = float(np.sqrt(2 * (256**2 - 1) / 12))  # std of the sum of two uniform bytes

# Tags that keep the random streams of different purposes apart.
_SPLIT, _IDENTITY, _CAMERA, _IMAGE, _DISTRACTOR, _LAYOUT, _TWIN = range(7)

_PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 28),
    "charcoal": (62, 62, 68),
    "grey": (128, 128, 130),
    "white": (228, 228, 222),
    "navy": (30, 40, 92),
    "blue": (42, 82, 170),
    "sky": (122, 170, 222),
    "red": (182, 32, 36),
    "maroon": (110, 26, 42),
    "green": (42, 122, 62),
    "olive": (108, 108, 50),
    "khaki": (176, 160, 112),
    "yellow": (222, 192, 52),
    "orange": (222, 122, 42),
    "pink": (222, 142, 172),
    "purple": (110, 62, 142),
    "brown": (100, 66, 40),
    "teal": (30, 120, 122),
}
# Street clothing is mostly dark or neutral; bright colours are rarer.
_UPPER_WEIGHTS = {name: 1.0 for name in _PALETTE} | {
    "black": 3,
    "white": 2.5,
    "grey": 2,
    "navy": 2,
    "blue": 1.5,
}
_LOWER_WEIGHTS = {
    "black": 4,
    "charcoal": 2,
    "navy": 2.5,
    "blue": 3,
    "grey": 1.5,
    "khaki": 1.5,
    "brown": 1,
    "white": 0.5,
}
_HAIR = [(20, 16, 14), (52, 34, 22), (96, 64, 36), (196, 164, 98), (150, 148, 146), (130, 52, 28)]
_HAIR_WEIGHTS = [4, 3, 2, 1, 0.7, 0.5]
_SKIN = [(236, 200, 170), (216, 172, 138), (186, 136, 100), (140, 96, 66), (96, 64, 44)]
_UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "jacket", "two_tone")
_UPPER_PATTERN_WEIGHTS = (4, 1.5, 1, 1, 1.5, 1)
_LOWER_KINDS = ("trousers", "shorts", "skirt")
_BAGS = ("none", "backpack", "handbag")
_VIEWS = ("front", "back", "side")
_TWIN_CHANGES = ("bag", "logo", "hair", "shoes", "sleeves", "lower_kind", "hat", "second_colour")


@dataclass(frozen=True)
class _Look:
    """What one identity wears and how it is built; colours are RGB floats in [0, 1]."""

    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    hat: np.ndarray | None
    upper: np.ndarray
    upper_second: np.ndarray
    upper_pattern: str
    pattern_period: float  # in units of the person's height
    short_sleeves: bool
    logo: np.ndarray | None  # chest print, seen from the front only
    lower: np.ndarray
    lower_kind: str
    shoes: np.ndarray
    bag: str
    bag_colour: np.ndarray
    bag_side: int  # which hand carries the handbag (+1 / -1)
    height: float  # fraction of the camera's framing height
    build: float  # width multiplier
    leg_fraction: float  # hip-to-sole length over body height


@dataclass(frozen=True)
class _Camera:
    """One camera's fixed look: light, colour cast, background, framing and nuisances."""

    gain: float
    gamma: float
    cast: np.ndarray
    view_probs: np.ndarray
    scale: float
    x_shift: float
    y_position: float
    blur: float
    resolution: float
    occlusion_prob: float
    noise: float
    background: Image.Image  # larger than the image, cropped at a random offset per image


@dataclass(frozen=True)
class _Job:
    """One image to draw: where it goes and what seeds it."""

    subset: str
    pid: int
    cam: int  # 1..6
    index: int  # image number within this pid (distractor number for pid 0)

    @property
    def filename(self) -> str:
        # Market numbers frames in a sequence; spacing keeps them plausible and unique per pid.
        return f"{self.pid:04d}_c{self.cam}s1_{25 * self.index + 1:06d}_00.jpg"


def write_synthetic_market(
    root: str | Path,
    *,
    seed: int = 0,
    train_ids: int = 100,
    test_ids: int = 100,
    images_per_id: int = 12,
    distractors: int = 200,
    height: int = 128,
    width: int = 64,
) -> Path:
    """Write the synthetic dataset under `root` (once) and return its Market-1501 folder.

    torchreid's `Market1501(root=root)` then reads it. The folder is generated into a hidden
    sibling (`.Market-1501-v15.09.15.partial-*`) and renamed into place, so it exists complete or
    not at all; a killed run leaves only that hidden folder, which is safe to delete. A later call
    with the same parameters returns at once; a folder written with other parameters (or not by
    this function) raises ValueError rather than being reused or overwritten. `distractors` may be
    0; every other count must be positive, `images_per_id` at least 2 (two cameras per id).
    """
    params = _validated_params(
        seed=seed,
        train_ids=train_ids,
        test_ids=test_ids,
        images_per_id=images_per_id,
        distractors=distractors,
        height=height,
        width=width,
    )
    root = Path(root).expanduser()
    market_dir = root / "market1501"
    for folder in (root, market_dir):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file; the synthetic dataset needs a folder there")
    target = market_dir / MARKET_FOLDER
    if target.is_dir() and any(target.iterdir()):
        _check_existing(target, params)
        return target
    if target.is_dir():
        target.rmdir()  # an empty folder (e.g. left by a failed download) holds nothing to keep
    market_dir.mkdir(parents=True, exist_ok=True)
    # Hidden and uniquely named: torchreid never looks at it, and concurrent writers never share one.
    # (mkdir, not mkdtemp: the finished folder keeps the user's usual permissions, not 0o700.)
    staging = market_dir / f".{MARKET_FOLDER}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        counts = _generate(staging, params)
        manifest = {"generator": __name__, "version": GENERATOR_VERSION, "params": params, "files": counts}
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished the same folder first: keep theirs if it is what we want.
            if not target.is_dir():
                raise
            _check_existing(target, params)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def existing_params(root: str | Path) -> dict[str, int] | None:
    """The parameters a synthetic dataset under `root` was written with by this generator
    version, or None if there is none (or it is unreadable, or from another version)."""
    manifest_path = Path(root).expanduser() / "market1501" / MARKET_FOLDER / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != GENERATOR_VERSION or not isinstance(manifest.get("params"), dict):
        return None
    return manifest["params"]


def _validated_params(**params: int) -> dict[str, int]:
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    minimum = {"seed": 0, "distractors": 0, "images_per_id": 2, "height": MIN_HEIGHT, "width": MIN_WIDTH}
    for name, value in params.items():
        low = minimum.get(name, 1)
        if value < low:
            why = {
                "images_per_id": " so every identity is seen by two cameras",
                "height": " to draw a person",
                "width": " to draw a person",
            }.get(name, "")
            raise ValueError(f"{name} must be >= {low}{why}, got {value}")
    if params["train_ids"] + params["test_ids"] > MAX_PID:
        raise ValueError(
            f"train_ids + test_ids must be <= {MAX_PID} (Market-1501 person ids), "
            f"got {params['train_ids']} + {params['test_ids']}"
        )
    return {name: int(value) for name, value in params.items()}


def _check_existing(target: Path, params: dict[str, int]) -> None:
    """Accept an existing folder only if it is complete and was written with `params`."""
    fix = "delete the folder to regenerate it, or pass another root"
    try:
        manifest = json.loads((target / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        raise ValueError(
            f"{target} exists but has no readable {MANIFEST_NAME}, so it was not written by "
            f"write_synthetic_market; {fix}"
        ) from None
    written = {"version": manifest.get("version"), **manifest.get("params", {})}
    wanted = {"version": GENERATOR_VERSION, **params}
    if written != wanted:
        differences = ", ".join(
            f"{key}={written.get(key)!r} (wanted {wanted.get(key)!r})"
            for key in sorted(set(written) | set(wanted))
            if written.get(key) != wanted.get(key)
        )
        raise ValueError(
            f"{target} holds a synthetic dataset written with other parameters: {differences}; {fix}"
        )
    for subset, expected in manifest.get("files", {}).items():
        found = sum(1 for _ in (target / subset).glob("*.jpg")) if (target / subset).is_dir() else 0
        if found != expected:
            raise ValueError(f"{target / subset} holds {found} images, its manifest says {expected}; {fix}")


def _generate(folder: Path, params: dict[str, int]) -> dict[str, int]:
    """Draw every image into `folder`; return the number of images per subset."""
    height, width, seed = params["height"], params["width"], params["seed"]
    cameras = _make_cameras(seed, height, width)
    looks = _identity_looks(seed, *_split_pids(seed, params["train_ids"], params["test_ids"]))
    grid = _Grid(height, width)
    counts = {TRAIN_DIR: 0, QUERY_DIR: 0, GALLERY_DIR: 0}
    for subset in counts:
        (folder / subset).mkdir()
    for job in _plan(params):
        rng = np.random.default_rng(
            [seed, _DISTRACTOR if job.pid == 0 else _IMAGE, job.pid, job.cam, job.index]
        )
        camera = cameras[job.cam - 1]
        if job.pid == 0:
            image = _draw_distractor(rng, camera, grid)
        else:
            image = _draw_image(rng, camera, looks[job.pid], grid)
        # Fixed quality, no EXIF or timestamps: the same inputs give the same bytes.
        image.save(folder / job.subset / job.filename, "JPEG", quality=JPEG_QUALITY)
        counts[job.subset] += 1
    return counts


# --- who appears where -----------------------------------------------------------------------


def _split_pids(seed: int, train_ids: int, test_ids: int) -> tuple[list[int], list[int]]:
    """Disjoint train and test pids, spread over 1..1501 and interleaved as in Market-1501."""
    total = train_ids + test_ids
    pids = np.round(np.linspace(1, MAX_PID, total)).astype(int) if total > 1 else np.array([1])
    order = np.random.default_rng([seed, _SPLIT]).permutation(total)
    return sorted(int(p) for p in pids[order[:train_ids]]), sorted(int(p) for p in pids[order[train_ids:]])


def _plan(params: dict[str, int]) -> Iterator[_Job]:
    """Every image to draw: train ids over their cameras, test ids split into query/gallery."""
    seed, per_id = params["seed"], params["images_per_id"]
    train_pids, test_pids = _split_pids(seed, params["train_ids"], params["test_ids"])
    for pid in train_pids:
        for index, cam in enumerate(_cameras_of(seed, pid, per_id)):
            yield _Job(TRAIN_DIR, pid, cam, index)
    for pid in test_pids:
        cams = _cameras_of(seed, pid, per_id)
        for index, is_query in enumerate(_query_flags(cams)):
            yield _Job(QUERY_DIR if is_query else GALLERY_DIR, pid, cams[index], index)
    layout = np.random.default_rng([seed, _LAYOUT, 0])
    for index in range(params["distractors"]):
        yield _Job(GALLERY_DIR, 0, int(layout.integers(1, NUM_CAMERAS + 1)), index)


def _cameras_of(seed: int, pid: int, count: int) -> list[int]:
    """The camera of each of a pid's images: 2..6 cameras, each seen at least once."""
    rng = np.random.default_rng([seed, _LAYOUT, pid])
    num_cams = int(rng.integers(2, min(NUM_CAMERAS, count) + 1))
    cams = sorted(int(c) for c in rng.choice(np.arange(1, NUM_CAMERAS + 1), size=num_cams, replace=False))
    extra = rng.multinomial(count - num_cams, np.full(num_cams, 1.0 / num_cams))
    return [cam for cam, n in zip(cams, extra + 1) for _ in range(n)]


def _query_flags(cams: list[int]) -> list[bool]:
    """One query per camera that holds two or more of the pid's images (Market style).

    Every query camera keeps an image in the gallery and a pid spans >= 2 cameras, so each
    query has a gallery match in another camera. If every camera holds one image, the first
    image is the query and the others (other cameras) are its matches.
    """
    flags, seen = [], set()
    for cam in cams:
        flags.append(cams.count(cam) >= 2 and cam not in seen)
        seen.add(cam)
    if not any(flags):
        flags[0] = True
    return flags


# --- what people look like -------------------------------------------------------------------


def _colour(rng: np.random.Generator, weights: dict[str, float], shade: float = 0.06) -> np.ndarray:
    names = list(weights)
    probs = np.array([weights[n] for n in names], dtype=float)
    name = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    base = np.array(_PALETTE[name], dtype=np.float32) / 255
    return np.clip(base * (1 + rng.normal(0, shade, 3)), 0, 1).astype(np.float32)


def _pick(rng: np.random.Generator, options, weights=None):
    probs = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return options[int(rng.choice(len(options), p=probs))]


def _random_look(rng: np.random.Generator) -> _Look:
    upper = _colour(rng, _UPPER_WEIGHTS)
    return _Look(
        skin=np.array(_pick(rng, _SKIN), np.float32) / 255,
        hair=np.array(_pick(rng, _HAIR, _HAIR_WEIGHTS), np.float32) / 255,
        long_hair=bool(rng.random() < 0.35),
        hat=_colour(rng, _UPPER_WEIGHTS) if rng.random() < 0.15 else None,
        upper=upper,
        upper_second=_colour(rng, _UPPER_WEIGHTS),
        upper_pattern=_pick(rng, _UPPER_PATTERNS, _UPPER_PATTERN_WEIGHTS),
        pattern_period=float(rng.uniform(0.03, 0.055)),
        short_sleeves=bool(rng.random() < 0.35),
        logo=_colour(rng, _UPPER_WEIGHTS) if rng.random() < 0.4 else None,
        lower=_colour(rng, _LOWER_WEIGHTS),
        lower_kind=_pick(rng, _LOWER_KINDS, (6, 2, 1.5)),
        shoes=_colour(rng, {"black": 4, "white": 3, "brown": 1, "grey": 1, "red": 0.5, "blue": 0.5}),
        bag=_pick(rng, _BAGS, (4, 2, 1.5)),
        bag_colour=_colour(rng, _UPPER_WEIGHTS),
        bag_side=int(rng.choice([-1, 1])),
        height=float(rng.uniform(0.9, 1.0)),
        build=float(rng.uniform(0.95, 1.25)),
        leg_fraction=float(rng.uniform(0.43, 0.5)),
    )


def _twin_of(base: _Look, rng: np.random.Generator) -> _Look:
    """A confusable identity: `base` with one subtle attribute changed (some seen from one side only)."""
    change = _pick(rng, _TWIN_CHANGES)
    other = _random_look(rng)
    if change == "bag":
        return replace(base, bag=_pick(rng, [b for b in _BAGS if b != base.bag]), bag_colour=other.bag_colour)
    if change == "logo":  # seen from the front only
        return replace(base, logo=None if base.logo is not None else other.upper_second)
    if change == "hair":
        return replace(base, hair=other.hair, long_hair=not base.long_hair)
    if change == "shoes":  # dark shoes become light ones and the other way round
        light = base.shoes.mean() > 0.5
        return replace(base, shoes=np.array(_PALETTE["black" if light else "white"], np.float32) / 255)
    if change == "sleeves":
        return replace(base, short_sleeves=not base.short_sleeves)
    if change == "lower_kind":
        return replace(base, lower_kind=_pick(rng, [k for k in _LOWER_KINDS if k != base.lower_kind]))
    if change == "hat":
        return replace(base, hat=None if base.hat is not None else other.upper)
    # second_colour: a plain top gains a yoke, a patterned one changes its second colour
    pattern = "two_tone" if base.upper_pattern == "plain" else base.upper_pattern
    return replace(base, upper_pattern=pattern, upper_second=other.upper_second)


def _identity_looks(seed: int, train_pids: list[int], test_pids: list[int]) -> dict[int, _Look]:
    """Each pid's look; within a split every TWIN_EVERY-th pid is a near twin of the one before."""
    looks: dict[int, _Look] = {}
    for pids in (train_pids, test_pids):
        for position, pid in enumerate(pids):
            if position % TWIN_EVERY == 1:
                looks[pid] = _twin_of(looks[pids[position - 1]], np.random.default_rng([seed, _TWIN, pid]))
            else:
                looks[pid] = _random_look(np.random.default_rng([seed, _IDENTITY, pid]))
    return looks


# --- cameras and backgrounds -----------------------------------------------------------------


def _make_cameras(seed: int, height: int, width: int) -> list[_Camera]:
    """Cameras 1..6. They film one campus, so their scenes share one set of facade and paving
    colours; what sets a camera apart is its light, framing, view and image quality.

    Each setting is stratified over the six cameras (one draw per sixth of its range), so every
    seed gets cameras about as different from each other as any other seed: similar difficulty.
    """
    rng = np.random.default_rng([seed, _CAMERA])
    facades = np.stack([_muted(rng, 0.2, 0.8) for _ in range(10)])
    pavings = np.stack([_muted(rng, 0.25, 0.6) for _ in range(4)])

    def spread(low: float, high: float, size: int | None = None) -> np.ndarray:
        shape = (NUM_CAMERAS,) if size is None else (size, NUM_CAMERAS)
        strata = np.stack([rng.permutation(NUM_CAMERAS) for _ in range(shape[0] if size else 1)])
        values = low + (high - low) * (strata + rng.uniform(0, 1, strata.shape)) / NUM_CAMERAS
        return values[0] if size is None else values.T

    gain, gamma, cast = spread(0.86, 1.1), spread(0.9, 1.1), spread(0.95, 1.05, size=3)
    scale, x_shift, y_position = spread(0.88, 0.98), spread(-0.05, 0.05), spread(0.25, 0.75)
    blur, occlusion, noise = spread(0.0, 1.1), spread(0.0, 0.35), spread(0.01, 0.035)
    resolution = rng.permutation([1.0, 1.0, 1.0, 0.8, 0.7, 0.5])
    return [
        _Camera(
            gain=float(gain[i]),
            gamma=float(gamma[i]),
            cast=cast[i].astype(np.float32),
            view_probs=rng.dirichlet(np.full(3, 0.8)),  # most cameras favour one walking direction
            scale=float(scale[i]),
            x_shift=float(x_shift[i]),
            y_position=float(y_position[i]),
            blur=float(blur[i]),
            resolution=float(resolution[i]),
            occlusion_prob=float(occlusion[i]),
            noise=float(noise[i]),
            background=_make_background(rng, height, width, facades, pavings),
        )
        for i in range(NUM_CAMERAS)
    ]


def _make_background(
    rng: np.random.Generator, height: int, width: int, facades: np.ndarray, pavings: np.ndarray
) -> Image.Image:
    """A camera's scene: a wide street panorama that each image crops at its own offset.

    People walk across the view, so the background behind them changes from image to image;
    a wide scene keeps the camera recognisable without making background the identity cue.
    """
    h, w = height + height // 8, 5 * width
    ys = np.arange(h, dtype=np.float32)[:, None, None] / h
    xs = np.arange(w, dtype=np.float32)[None, :, None] / w
    horizon = rng.uniform(0.45, 0.8)
    floor_edges = np.sort(rng.uniform(0, 1, int(rng.integers(2, 5))))
    floor_colours = pavings[rng.integers(len(pavings), size=len(floor_edges) + 1)]
    floor = floor_colours[np.searchsorted(floor_edges, xs[..., 0])] * (0.8 + 0.4 * ys)
    if rng.random() < 0.5:  # paving slabs
        period = rng.uniform(0.08, 0.16)
        lines = (np.abs((ys / period) % 1 - 0.5) > 0.44) | (np.abs((xs * w / h / period) % 1 - 0.5) > 0.44)
        floor = np.where(lines, floor * 0.75, floor)
    # Above the horizon: a row of facades, shop windows and trees of varying widths.
    edges = np.sort(rng.uniform(0, 1, int(rng.integers(4, 9))))
    segment = np.searchsorted(edges, xs[..., 0])
    colours = facades[rng.integers(len(facades), size=len(edges) + 1)]
    scene = colours[segment]
    coarse = rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8))).astype(np.uint8)
    leaves = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), np.float32)[..., None] / 255
    foliage = (0.25 + 0.5 * leaves) * np.array([0.6, 0.8, 0.45], np.float32)
    leafy = rng.random(len(edges) + 1)[segment][..., None] < 0.3
    scene = np.where(leafy, foliage, scene)
    image = np.where(ys < horizon, scene, floor)
    return Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))


def _muted(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A greyish scene colour (pavement, walls): street scenes are far less saturated than clothes."""
    return np.clip(rng.uniform(low, high) + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)


# --- drawing ---------------------------------------------------------------------------------


class _Grid:
    """Pixel-centre coordinates of an image, shared by every drawing call."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
        self.xs = np.arange(width, dtype=np.float32)[None, :] + 0.5


class _Painter:
    """Paints body parts given in body units: u across (0 = body axis), v down (0 = head top).

    Working in body units makes scale, position, mirroring and lean a change of coordinates.
    Parts paint colour numbers into a label map, turned into colours once at the end (cheaper
    than writing RGB per part).
    """

    def __init__(
        self, grid: _Grid, top: float, body_height: float, centre_x: float, mirror: int, lean: float
    ):
        self.v = (grid.ys - top) / body_height
        self.v_rows = self.v[:, 0]
        self.u = mirror * (grid.xs - centre_x) / body_height + lean * (self.v - 0.5)
        self.labels = np.zeros((grid.height, grid.width), np.uint8)  # 0: not painted
        self.colours: list[np.ndarray] = [np.zeros(3, np.float32)]

    def quad(
        self, v0: float, v1: float, left0: float, right0: float, left1: float, right1: float
    ) -> np.ndarray:
        """Mask of a trapezoid: rows v0..v1, edges linearly interpolated from top to bottom."""
        mask = np.zeros(self.labels.shape, bool)
        # Only the rows the part spans are computed: most parts are thin bands.
        first, stop = np.searchsorted(self.v_rows, (v0, v1))
        if stop > first:
            t = (self.v[first:stop] - v0) / (v1 - v0)
            u = self.u[first:stop]
            mask[first:stop] = (u >= left0 + t * (left1 - left0)) & (u < right0 + t * (right1 - right0))
        return mask

    def ellipse(self, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
        return ((self.u - cu) / ru) ** 2 + ((self.v - cv) / rv) ** 2 <= 1

    def paint(
        self, mask: np.ndarray, colour: np.ndarray, second: np.ndarray | None = None, pattern=None
    ) -> None:
        """Fill `mask` with `colour`, or with `second` where the boolean `pattern` holds."""
        self.colours.append(colour)
        self.labels[mask] = len(self.colours) - 1
        if pattern is not None:
            self.colours.append(second)
            self.labels[mask & pattern] = len(self.colours) - 1

    def composite(self, scene: Image.Image) -> Image.Image:
        """Paste the painted person onto `scene` (in place) and return it."""
        height, width = self.labels.shape
        person = Image.frombytes("P", (width, height), self.labels.tobytes())
        person.putpalette((np.stack(self.colours) * 255 + 0.5).astype(np.uint8).ravel().tolist())
        painted = Image.frombytes("L", (width, height), ((self.labels > 0) * np.uint8(255)).tobytes())
        scene.paste(person.convert("RGB"), (0, 0), painted)
        return scene


def _upper_pattern(painter: _Painter, look: _Look, view: str, half_width: float) -> np.ndarray | None:
    u, v, period = painter.u, painter.v, look.pattern_period
    kind = look.upper_pattern
    if kind == "hstripes":
        return (np.floor(v / period) % 2).astype(bool)
    if kind == "vstripes":
        return (np.floor(u / period) % 2).astype(bool)
    if kind == "checks":
        return ((np.floor(v / period) + np.floor(u / period)) % 2).astype(bool)
    if kind == "jacket":  # an open jacket: the shirt shows down the front only
        return (np.abs(u) < 0.35 * half_width) if view == "front" else None
    if kind == "two_tone":  # a yoke of the second colour across the shoulders
        return v < 0.25
    return None


def _draw_person(painter: _Painter, look: _Look, view: str, stride: float) -> None:
    """Draw one person front, back or side on; `stride` is the walking phase (-1..1)."""
    side = view == "side"
    shoulder_v, hip_v, sole_v = 0.15, 1.0 - look.leg_fraction, 0.965
    shoulder = (0.095 if side else 0.145) * look.build
    hip = (0.09 if side else 0.12) * look.build
    knee_v = hip_v + 0.45 * (sole_v - hip_v)
    leg_width = 0.085 if side else 0.105 * look.build
    lower_legs = look.lower if look.lower_kind == "trousers" else look.skin

    # Backpack seen from the side sticks out behind the torso; drawn first so the torso covers it.
    if look.bag == "backpack" and side:
        painter.paint(
            painter.quad(shoulder_v + 0.02, hip_v - 0.04, -shoulder - 0.075, 0, -shoulder - 0.07, 0),
            look.bag_colour,
        )

    # Legs: apart and swinging when seen from the side, nearly parallel from the front or back.
    if side:
        feet = [(0.0, 0.13 * stride), (0.0, -0.13 * stride)]
    else:
        spread = 0.02 * abs(stride)
        feet = [
            (-hip + leg_width / 2, -hip + leg_width / 2 - spread),
            (hip - leg_width / 2, hip - leg_width / 2 + spread),
        ]
    for top_u, foot_u in feet:
        knee_u = top_u + 0.45 * (foot_u - top_u)
        half = leg_width / 2
        upper_leg = painter.quad(hip_v, knee_v, top_u - half, top_u + half, knee_u - half, knee_u + half)
        lower_leg = painter.quad(
            knee_v, sole_v, knee_u - half, knee_u + half, foot_u - half * 0.9, foot_u + half * 0.9
        )
        painter.paint(upper_leg, look.lower if look.lower_kind != "skirt" else look.skin)
        painter.paint(lower_leg, lower_legs)
        toe = 0.05 if side else 0.0
        painter.paint(
            painter.quad(sole_v, 1.0, foot_u - half, foot_u + half + toe, foot_u - half, foot_u + half + toe),
            look.shoes,
        )
    if look.lower_kind == "skirt":
        painter.paint(painter.quad(hip_v - 0.02, knee_v + 0.03, -hip, hip, -hip * 1.5, hip * 1.5), look.lower)
    else:  # hips and crotch
        painter.paint(painter.quad(hip_v - 0.02, hip_v + 0.06, -hip, hip, -hip, hip), look.lower)

    # Arms: both beside the torso from the front or back, one swinging across it from the side.
    sleeve_end = shoulder_v + 0.1 if look.short_sleeves else hip_v - 0.02
    hand_v = hip_v + 0.06
    arms = (
        [(0.0, -0.1 * stride)]
        if side
        else [(-shoulder - 0.035, -shoulder - 0.05), (shoulder + 0.035, shoulder + 0.05)]
    )
    torso_pattern = _upper_pattern(painter, look, view, shoulder)
    torso = painter.quad(shoulder_v, hip_v + 0.02, -shoulder, shoulder, -hip, hip)
    if side:
        painter.paint(torso, look.upper, look.upper_second, torso_pattern)
    for top_u, hand_u in arms:
        arm = painter.quad(
            shoulder_v + 0.01, hand_v, top_u - 0.037, top_u + 0.037, hand_u - 0.03, hand_u + 0.03
        )
        sleeve = arm & (painter.v < sleeve_end)
        painter.paint(arm & ~sleeve, look.skin)
        painter.paint(sleeve, look.upper, look.upper_second, torso_pattern)
    if not side:
        painter.paint(torso, look.upper, look.upper_second, torso_pattern)
    if look.logo is not None and view == "front":
        painter.paint(painter.quad(0.21, 0.27, -0.04, 0.04, -0.04, 0.04), look.logo)

    # Head: face from the front, hair from the back, half and half from the side.
    head_v, head_ru, head_rv = 0.07, 0.05, 0.065
    painter.paint(painter.quad(0.12, shoulder_v + 0.01, -0.02, 0.02, -0.025, 0.025), look.skin)  # neck
    head = painter.ellipse(0.0, head_v, head_ru, head_rv)
    painter.paint(head, look.skin)
    if view == "back":
        hair = head
    elif side:
        hair = head & ((painter.u < 0.01) | (painter.v < head_v - 0.035))
    else:
        hair = head & (painter.v < head_v - 0.03)
    if look.long_hair:
        fall = painter.quad(head_v, 0.27, -head_ru - 0.01, head_ru + 0.01, -head_ru - 0.015, head_ru + 0.015)
        if view == "front":
            fall &= np.abs(painter.u) > head_ru * 0.7  # hair falls beside the face
        elif side:
            fall &= painter.u < 0
        hair = hair | fall
    painter.paint(hair, look.hair)
    if look.hat is not None:
        brim = 0.03 if side else 0.01
        painter.paint(
            painter.quad(-0.005, head_v - 0.025, -head_ru, head_ru + brim, -head_ru - 0.005, head_ru + brim),
            look.hat,
        )

    # Bags over the body: backpack from behind, straps from the front, handbag at one hand.
    if look.bag == "backpack" and view == "back":
        pack_top, pack_bottom = shoulder_v + 0.02, hip_v - 0.03
        top_half, bottom_half = shoulder * 0.8, shoulder * 0.85
        pack = painter.quad(pack_top, pack_bottom, -top_half, top_half, -bottom_half, bottom_half)
        painter.paint(pack, look.bag_colour)
    elif look.bag == "backpack" and view == "front":
        for strap_u in (-shoulder * 0.55, shoulder * 0.55):
            left, right = strap_u - 0.015, strap_u + 0.015
            painter.paint(
                painter.quad(shoulder_v, shoulder_v + 0.14, left, right, left, right), look.bag_colour
            )
    elif look.bag == "handbag":
        if side:
            hand_u = -0.1 * stride  # swings with the arm
        else:  # seen from behind, the carrying hand is on the other side of the picture
            hand_u = look.bag_side * (shoulder + 0.04) * (1 if view == "front" else -1)
        bag = painter.quad(
            hand_v - 0.02, hand_v + 0.1, hand_u - 0.045, hand_u + 0.045, hand_u - 0.05, hand_u + 0.05
        )
        painter.paint(bag, look.bag_colour)


def _draw_image(rng: np.random.Generator, camera: _Camera, look: _Look, grid: _Grid) -> Image.Image:
    """One image of `look` as `camera` sees it, with its own pose, framing and noise."""
    view = _VIEWS[int(rng.choice(3, p=camera.view_probs))]
    body_height = grid.height * camera.scale * look.height * (1 + rng.normal(0, 0.04))
    top = (grid.height - body_height) * np.clip(camera.y_position + rng.normal(0, 0.12), 0, 1)
    centre_x = grid.width * (0.5 + camera.x_shift + rng.normal(0, 0.04))
    mirror = int(rng.choice([-1, 1]))
    painter = _Painter(grid, top, body_height, centre_x, mirror, lean=float(rng.normal(0, 0.04)))
    _draw_person(painter, look, view, stride=float(np.sin(rng.uniform(0, 2 * np.pi))))
    scene = painter.composite(_background(rng, camera, grid))
    return _through_camera(rng, camera, _occlude(rng, camera, scene))


def _draw_distractor(rng: np.random.Generator, camera: _Camera, grid: _Grid) -> Image.Image:
    """A gallery distractor: background clutter, or a stranger badly framed (as detector misses)."""
    scene = _background(rng, camera, grid)
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(scene)
        for _ in range(int(rng.integers(2, 7))):
            y0, x0 = rng.uniform(0, grid.height), rng.uniform(0, grid.width)
            box = (x0, y0, x0 + rng.uniform(4, grid.width / 2), y0 + rng.uniform(6, grid.height / 2))
            fill = tuple(int(c) for c in _colour(rng, _UPPER_WEIGHTS, shade=0.15) * 255)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    else:
        stranger = _random_look(rng)
        body_height = grid.height * rng.uniform(0.7, 1.8)
        if body_height > grid.height:  # too close: only part of the body is in the box
            top = rng.uniform(-0.6, 0.3) * body_height
        else:
            top = rng.uniform(0, grid.height - body_height)
        centre_x = grid.width * rng.uniform(0.1, 0.9)
        painter = _Painter(
            grid, top, body_height, centre_x, int(rng.choice([-1, 1])), float(rng.normal(0, 0.05))
        )
        _draw_person(painter, stranger, _VIEWS[int(rng.integers(3))], float(rng.uniform(-1, 1)))
        scene = painter.composite(scene)
    return _through_camera(rng, camera, _occlude(rng, camera, scene))


def _background(rng: np.random.Generator, camera: _Camera, grid: _Grid) -> Image.Image:
    full = camera.background
    dy = int(rng.integers(0, full.height - grid.height + 1))
    dx = int(rng.integers(0, full.width - grid.width + 1))
    crop = full.crop((dx, dy, dx + grid.width, dy + grid.height))
    # Sun, shade and passing light change the scene behind each person, not only the camera.
    tint = rng.uniform(0.75, 1.25) * rng.uniform(0.92, 1.08, 3)
    table = np.clip(np.arange(256, dtype=np.float32)[None, :] * tint[:, None], 0, 255) + 0.5
    return crop.point(table.astype(np.uint8).ravel().tolist())


def _occlude(rng: np.random.Generator, camera: _Camera, scene: Image.Image) -> Image.Image:
    """Sometimes hide part of the body behind a pole or a low obstacle (bench, car, bin)."""
    if rng.random() >= camera.occlusion_prob:
        return scene
    fill = tuple(int(c) for c in rng.integers(25, 180, 3))
    width, height = scene.size
    if rng.random() < 0.5:
        x0 = rng.uniform(0, width)
        box = (x0, 0, x0 + rng.uniform(0.08, 0.2) * width, height)
    else:
        box = (0, height * rng.uniform(0.6, 0.85), width, height)
    ImageDraw.Draw(scene).rectangle(box, fill=fill)
    return scene


def _through_camera(rng: np.random.Generator, camera: _Camera, image: Image.Image) -> Image.Image:
    """Resolution, blur, light, colour cast and sensor noise of the camera."""
    width, height = image.size
    if camera.resolution < 1:
        small = (max(8, round(width * camera.resolution)), max(8, round(height * camera.resolution)))
        image = image.resize(small, Image.BILINEAR).resize((width, height), Image.BILINEAR)
    radius = camera.blur * rng.uniform(0.7, 1.3)
    if radius > 0.2:
        image = image.filter(ImageFilter.BoxBlur(radius))  # one box pass: near Gaussian, 2.5x cheaper
    # Gain, cast and gamma act per channel value: a 3 x 256 lookup table instead of pixel maths.
    levels = np.arange(256, dtype=np.float32)[None, :] / 255
    gain = camera.gain * rng.uniform(0.9, 1.1)
    table = np.clip(levels * (camera.cast[:, None] * gain), 0, 1) ** camera.gamma * 255 + 0.5
    pixels = np.asarray(image.point(table.astype(np.uint8).ravel().tolist()), np.float32)
    # Sensor noise: the sum of two uniform bytes is near-Gaussian and several times cheaper to draw.
    size = height * width * 3
    uniform = np.frombuffer(rng.bytes(2 * size), np.uint8).astype(np.float32)
    noise = (uniform[:size] + uniform[size:] - 255).reshape(height, width, 3)
    pixels += noise * np.float32(camera.noise * 255 / _TRIANGULAR_STD) + 0.5
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
