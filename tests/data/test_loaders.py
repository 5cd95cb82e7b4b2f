import collections

import numpy as np
import pytest
import torch
from PIL import Image

from reidgraft.data import build_test_loader, build_train_loaders, read_rgb
from reidgraft.data.loaders import IdentitySampler, set_epoch
from reidgraft.images import ImageReadError

from ..engine.test_trainer import splits  # noqa: F401 (a fixture)


@pytest.fixture
def items(tmp_path):
    rng = np.random.default_rng(0)
    result = []
    for i in range(12):
        path = tmp_path / f"{i:04d}_c1s1_000001_00.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(path)
        result.append((str(path), i % 4, i % 3))
    return result


def epoch_batches(loader, epoch):
    set_epoch([loader], epoch)
    return [(images.clone(), indices.tolist()) for images, _, _, indices in loader]


def make(items, count=3, seed=0):
    return build_train_loaders(
        items,
        count=count,
        seed=seed,
        height=32,
        width=16,
        augment=["random_flip", "random_crop"],
        batch_size=4,
    )


def test_each_model_has_its_own_order_and_augmentation(items):
    loaders = make(items)
    orders = [sum((ix for _, ix in epoch_batches(loader, 0)), []) for loader in loaders]
    assert all(sorted(order) == list(range(12)) for order in orders)
    assert len({tuple(order) for order in orders}) == 3
    # Same image index, different loader seed: a different random crop/flip.
    first = [dict(zip(ix, images)) for images, ix in epoch_batches(loaders[0], 0)]
    second = [dict(zip(ix, images)) for images, ix in epoch_batches(loaders[1], 0)]
    a = {k: v for d in first for k, v in d.items()}
    b = {k: v for d in second for k, v in d.items()}
    assert any(not torch.equal(a[i], b[i]) for i in range(12))


def test_batches_are_a_function_of_seed_and_epoch_alone(items):
    (loader,) = make(items, count=1)
    (again,) = make(items, count=1)
    torch.manual_seed(123)  # the global RNG must not matter
    epoch1 = epoch_batches(loader, 1)
    torch.manual_seed(456)
    assert all(
        torch.equal(x, y) and i == j for (x, i), (y, j) in zip(epoch1, epoch_batches(again, 1), strict=True)
    )
    assert [i for _, i in epoch_batches(loader, 2)] != [i for _, i in epoch1]
    # The global RNG state is left as it was.
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    epoch_batches(loader, 3)
    assert torch.equal(torch.rand(1), expected)


def test_workers_give_the_same_batches(items):
    (serial,) = make(items, count=1)
    (parallel,) = build_train_loaders(
        items,
        count=1,
        seed=0,
        height=32,
        width=16,
        augment=["random_flip", "random_crop"],
        batch_size=4,
        workers=2,
    )
    for (x, i), (y, j) in zip(epoch_batches(serial, 0), epoch_batches(parallel, 0), strict=True):
        assert i == j and torch.equal(x, y)


def test_test_loader_keeps_list_order_and_drops_nothing(items):
    loader = build_test_loader(items[:10], height=32, width=16, batch_size=4)
    indices = [i for _, _, _, batch in loader for i in batch.tolist()]
    assert indices == list(range(10))


def test_unreadable_image_names_the_file(tmp_path, items):
    broken = tmp_path / "0001_c1s1_000009_00.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=f"cannot read image {broken}"):
        read_rgb(str(broken))
    loader = build_test_loader([*items[:3], (str(broken), 1, 0)], height=32, width=16, batch_size=8)
    with pytest.raises(ImageReadError, match="0001_c1s1_000009_00.jpg"):
        list(loader)


def test_a_worker_reports_the_unreadable_file_as_the_main_process_does(tmp_path, items):
    broken = tmp_path / "0002_c1s1_000009_00.jpg"
    broken.write_bytes(b"not a jpeg")
    loader = build_test_loader(
        [*items[:3], (str(broken), 1, 0)], height=32, width=16, batch_size=8, workers=1
    )
    with pytest.raises(ImageReadError) as caught:
        list(loader)
    assert str(caught.value).startswith(f"cannot read image {broken}") and "\n" not in str(caught.value)


def test_too_few_images_for_a_batch(items):
    with pytest.raises(ValueError, match="fewer than one batch"):
        build_train_loaders(items[:3], count=1, seed=0, height=32, width=16, augment=[], batch_size=4)


def test_persistent_workers_see_every_epoch_and_match_the_serial_loader(items):
    """Workers that live across epochs keep their own copy of the dataset: the epoch must reach
    them with each index, or every epoch would repeat epoch 0's augmentation."""
    (serial,) = make(items, count=1)
    (parallel,) = build_train_loaders(
        items, count=1, seed=0, height=32, width=16, augment=["random_flip", "random_crop"], batch_size=4,
        workers=2,
    )  # fmt: skip
    assert parallel.persistent_workers and not parallel.pin_memory
    by_epoch = []
    for epoch in range(3):
        batches = epoch_batches(parallel, epoch)  # the same worker processes every epoch
        for (x, i), (y, j) in zip(batches, epoch_batches(serial, epoch), strict=True):
            assert i == j and torch.equal(x, y)
        by_epoch.append({index: image for images, ix in batches for index, image in zip(ix, images)})
    for later in by_epoch[1:]:  # the same image is augmented anew each epoch
        assert any(not torch.equal(by_epoch[0][i], later[i]) for i in range(12))


def test_random_erasing_is_one_of_the_transforms():
    from reidgraft.data.loaders import reid_transforms

    train, test = reid_transforms(64, 32, ["random_flip", "random_erase"])
    assert "RandomErasing" in [type(step).__name__ for step in train.transforms]
    assert "RandomErasing" not in [type(step).__name__ for step in test.transforms]


def batch_identities(sampler, labels, epoch):
    return [collections.Counter(labels[i] for i in batch) for batch in sampler.batches(epoch)]


def test_identity_sampler_batches_hold_p_identities_of_n_images():
    # 12 identities: most with 5 images, one with 2 (drawn with replacement), one with 17
    labels = [pid for pid in range(10) for _ in range(5)] + [10, 10] + [11] * 17
    sampler = IdentitySampler(labels, instances=4, identities_per_batch=4, seed=3)
    assert sampler.short_identities == 1
    for epoch in range(3):
        batches = batch_identities(sampler, labels, epoch)
        assert len(batches) == sampler.steps > 0
        for counts in batches:
            assert len(counts) == 4 and set(counts.values()) == {4}
    assert len(sampler) == sampler.steps * 16
    # (epoch, index) pairs, so the epoch reaches persistent workers; resume: same epoch, same order
    sampler.epoch = 2
    first = list(sampler)
    assert {key[0] for key in first} == {2}
    again = IdentitySampler(labels, 4, 4, seed=3)
    again.epoch = 2
    assert list(again) == first
    assert sampler.batches(0) != sampler.batches(1)


def test_each_copy_of_a_repeated_image_is_augmented_anew():
    from reidgraft.data.loaders import sample_key, transformed

    labels = [0] + [pid for pid in range(1, 4) for _ in range(4)]  # identity 0 has one image
    sampler = IdentitySampler(labels, instances=4, identities_per_batch=2, seed=0)
    keys = [sample_key(key) for key in sampler]
    lone = [key for key in keys if key[1] == 0]
    assert [copy for _, _, copy in lone] == [0, 1, 2, 3]  # its 4 draws in one batch
    others = [key for key in keys if key[1] != 0]
    assert others and {copy for _, _, copy in others} == {0}  # images of full identities: once each

    def draw(image):  # stands for a random augmentation: it draws from the seeded RNGs
        return torch.rand(3)

    augmented = [transformed(draw, None, 7, *key) for key in lone]
    assert all(not torch.equal(augmented[0], other) for other in augmented[1:])
    assert torch.equal(transformed(draw, None, 7, *lone[1]), augmented[1])  # still reproducible


def test_identity_samplers_of_two_models_differ_but_take_the_same_steps():
    labels = [pid for pid in range(9) for _ in range(3 + pid)]
    one, two = IdentitySampler(labels, 4, 3, seed=0), IdentitySampler(labels, 4, 3, seed=1)
    assert one.steps == two.steps
    assert one.batches(0) != two.batches(0)


def test_identity_sampler_refuses_fewer_identities_than_a_batch():
    with pytest.raises(ValueError, match="the training set has 2 identities, fewer than a batch's 4"):
        IdentitySampler([0, 0, 1, 1], 2, 4, seed=0)


def test_identity_loaders_give_each_model_its_batches(splits):  # noqa: F811 (the fixture)
    loaders = build_train_loaders(
        splits.train, count=2, seed=0, height=32, width=16, augment=["random_flip"], batch_size=8,
        sampler="identity", num_instances=2,
    )  # fmt: skip
    assert len(loaders[0]) == len(loaders[1])
    first = [pids.tolist() for _, pids, _, _ in loaders[0]]
    other = [pids.tolist() for _, pids, _, _ in loaders[1]]
    assert first != other
    for pids in first:
        assert sorted(collections.Counter(pids).values()) == [2, 2, 2, 2]


def test_random_pad_crop_shifts_the_picture_by_at_most_ten_pixels():
    from PIL import Image

    from reidgraft.data.loaders import reid_transforms, transformed

    train, _ = reid_transforms(64, 32, ["random_pad_crop"])
    white = Image.new("RGB", (32, 64), (255, 255, 255))
    shifts = set()
    for index in range(30):
        picture = transformed(train, white, 0, 0, index)[0]
        assert picture.shape == (64, 32)
        padded = picture < 0  # zero padding, below the mean after normalisation
        rows, columns = padded.all(dim=1).sum().item(), padded.all(dim=0).sum().item()
        assert rows <= 10 and columns <= 10 and padded.sum() == rows * 32 + columns * 64 - rows * columns
        shifts.add((rows, columns))
    assert len(shifts) > 5
