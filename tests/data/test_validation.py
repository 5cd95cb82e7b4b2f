"""Validation data held out of training: identities for re-ID, images per class otherwise."""

import numpy as np
import pytest

from reidgraft.data.classification import ClassificationData
from reidgraft.data.datasets import ReidSplits
from reidgraft.data.validation import hold_out_identities, hold_out_images


def reid_splits():
    # 10 identities (relabelled 0..9) seen by cameras 0..2, 2 images each; identity 9 by one camera
    train = [
        (f"{pid:04d}_c{cam}_{i}.jpg", pid, cam) for pid in range(10) for cam in range(3) for i in range(2)
    ]
    train = [item for item in train if item[1] != 9 or item[2] == 0]
    return ReidSplits("toy", sorted(train), [("q.jpg", 50, 0)], [("g.jpg", 50, 1)])


def test_held_out_identities_become_a_query_and_gallery_and_leave_training():
    splits = reid_splits()
    train, validation = hold_out_identities(splits, 3)

    held = {pid for _, pid, _ in validation.query + validation.gallery}
    assert len(held) == 3
    assert {path for path, _, _ in train.train}.isdisjoint(path for path, _, _ in validation.gallery)
    assert len(train.train) + len(validation.query) + len(validation.gallery) == len(splits.train)
    assert sorted({pid for _, pid, _ in train.train}) == list(range(7))  # relabelled for the classifier
    # one query per (identity, camera): the first image of each camera; the rest is gallery
    assert len(validation.query) == len({(pid, cam) for _, pid, cam in validation.query})
    assert all((pid, cam) in {(p, c) for _, p, c in validation.query} for _, pid, cam in validation.gallery)
    assert train.query == splits.query and train.gallery == splits.gallery  # the test set is untouched
    assert hold_out_identities(splits, 3) == (train, validation)  # the same choice every time


@pytest.mark.parametrize("count", [9, 20])
def test_holding_out_too_many_identities_is_one_line(count):
    with pytest.raises(
        ValueError, match=f"val_ids {count}: toy has 10 training identities, so hold out 1 to 8"
    ):
        hold_out_identities(reid_splits(), count)


def test_held_out_images_per_class():
    labels = np.repeat(np.arange(3), 5)
    data = ClassificationData("digits", np.arange(15)[:, None], labels, np.zeros((2, 1)), np.zeros(2), 3)
    train, validation = hold_out_images(data, 2)
    assert np.bincount(validation.test_labels).tolist() == [2, 2, 2]
    assert np.bincount(train.train_labels).tolist() == [3, 3, 3]
    assert set(train.train_images[:, 0]).isdisjoint(validation.test_images[:, 0])
    with pytest.raises(ValueError, match="smallest class has 5 training images, so hold out 1 to 4"):
        hold_out_images(data, 5)
