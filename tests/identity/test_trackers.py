"""Tracker glue with the real packages: two people leave the scene and come back on each other's
side, so the tracker gives them new track ids (and box motion cannot tell who is who); their
persistent identities stay. boxmot's ByteTrack and Roboflow's trackers (supervision Detections)."""

import numpy as np
import pytest

import reidgraft
from reidgraft.identity.memory import IdentityMemory
from reidgraft.identity.trackers import PersistentIds

HEIGHT, WIDTH = 160, 320
BOX = {"left": (20, 30, 60, 130), "right": (220, 30, 260, 130)}  # left, top, right, bottom


def sprite(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> np.ndarray:
    person = np.zeros((100, 40, 3), np.uint8)
    person[:45], person[45:] = top, bottom
    person[5:20, 12:28] = (180, 150, 130)  # a head
    return person


PEOPLE = {"A": sprite((40, 40, 200), (90, 40, 20)), "B": sprite((30, 200, 220), (120, 170, 190))}  # BGR


def scene():
    """(frame, {person: box}) for each frame: A left and B right, then nobody for 40 frames, then
    A right and B left."""
    for index in range(60):
        frame = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        if index < 10:
            places = {"A": "left", "B": "right"}
        elif index < 50:
            places = {}
        else:
            places = {"A": "right", "B": "left"}
        boxes = {}
        for name, side in places.items():
            left, top, right, bottom = BOX[side]
            frame[top:bottom, left:right] = PEOPLE[name]
            boxes[name] = BOX[side]
        yield frame, boxes


@pytest.fixture
def persistent(val_run):
    extractor = reidgraft.FeatureExtractor(val_run, device="cpu")
    # the same painted person gives the same crop: a strict threshold tells the two apart
    return PersistentIds(extractor, IdentityMemory(extractor.dim, 0.999, model=extractor.digest), "cam")


def who(boxes_out: np.ndarray, truth: dict) -> list[str]:
    """The person whose true box each output box overlaps."""
    found = []
    for box in boxes_out:
        centre = (box[0] + box[2]) / 2
        found.append(min(truth, key=lambda name: abs((truth[name][0] + truth[name][2]) / 2 - centre)))
    return found


def check(seen: dict):
    """Each person's (track id, identity) before and after leaving: new track ids, the same identity."""
    for name in ("A", "B"):
        before, after = seen[name]["before"], seen[name]["after"]
        assert before and after, seen
        assert {track for track, _ in before}.isdisjoint({track for track, _ in after}), seen
        identities = {identity for _, identity in before + after if identity >= 0}
        assert len(identities) == 1, seen
    assert seen["A"]["before"][-1][1] != seen["B"]["before"][-1][1]


def test_boxmot_bytetrack(persistent):
    from boxmot import ByteTrack

    tracker, seen = ByteTrack(), {name: {"before": [], "after": []} for name in "AB"}
    for index, (frame, truth) in enumerate(scene()):
        detections = np.array([[*box, 0.9, 0] for box in truth.values()], float).reshape(-1, 6)
        tracks = tracker.update(detections, frame)
        identities = persistent.boxmot(frame, tracks)
        for name, track, identity in zip(who(tracks, truth), tracks[:, 4], identities, strict=True):
            seen[name]["before" if index < 10 else "after"].append((int(track), int(identity)))
    check(seen)


def test_roboflow_trackers_with_supervision_detections(persistent):
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker, seen = ByteTrackTracker(), {name: {"before": [], "after": []} for name in "AB"}
    for index, (frame, truth) in enumerate(scene()):
        boxes = np.array(list(truth.values()), float).reshape(-1, 4)
        detections = sv.Detections(
            xyxy=boxes, confidence=np.full(len(boxes), 0.9), class_id=np.zeros(len(boxes), int)
        )
        tracked = tracker.update(detections)
        identities = persistent.supervision(frame, tracked)
        assert np.array_equal(tracked.data["identity"], identities)
        for name, track, identity in zip(
            who(tracked.xyxy, truth), tracked.tracker_id, identities, strict=True
        ):
            if track >= 0:  # (unconfirmed tracks carry -1, and no identity)
                seen[name]["before" if index < 10 else "after"].append((int(track), int(identity)))
            else:
                assert identity == -1
    check(seen)


def test_empty_crops_are_counted_and_bad_input_is_one_line(persistent, val_run):
    frame = next(scene())[0]
    boxes = [BOX["left"], (400, 10, 450, 100), (10, 10, 10, 50), (np.nan, 0, 5, 5)]
    identities = persistent.update(frame, boxes, [1, 2, 3, 4])
    assert identities[0] >= 1 and list(identities[1:]) == [-1, -1, -1]  # new tracks without a crop
    assert persistent.empty_crops == 3  # outside the frame, no width, not finite
    # track 1 walks out of the frame while a look-alike track appears: 1 keeps its identity, and
    # the newcomer may not take it in this frame
    again = persistent.update(frame, [(330, 30, 370, 130), BOX["left"]], [1, 5])
    assert again[0] == identities[0] and again[1] not in (-1, identities[0])
    assert persistent.empty_crops == 4
    with pytest.raises(ValueError, match="2 boxes and 1 track ids"):
        persistent.update(frame, [BOX["left"], BOX["right"]], [1])
    with pytest.raises(ValueError, match="frame must be an HxWx3 uint8 image"):
        persistent.update(frame.astype(np.float32), [BOX["left"]], [1])
    extractor = persistent.extractor
    with pytest.raises(ValueError, match="features of two models do not compare"):
        PersistentIds(extractor, IdentityMemory(extractor.dim, 0.9, model="f" * 64))
