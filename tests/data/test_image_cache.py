"""The decoded-image cache: batches equal to decoding every read, for every augmentation; one
decode per image across models and epochs; the budget and the workers respected."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reidgraft.data import build_test_loader, build_train_loaders
from reidgraft.data.image_cache import DecodedImages, plan_image_cache
from reidgraft.data.loaders import REID_AUGMENTATIONS, set_epoch

from ..engine.test_trainer import run, splits  # noqa: F401 (splits: a fixture)


@pytest.fixture
def items(tmp_path):
    """Crops of three sizes, none at the input size (so the resize does work)."""
    rng = np.random.default_rng(0)
    result = []
    for i in range(16):
        size = [(50, 22), (40, 20), (70, 30)][i % 3]
        path = tmp_path / f"{i:04d}_c1s1_000001_00.png"
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        result.append((str(path), i % 4, i % 3))
    return result


def epochs(loaders, count=2):
    batches = []
    for epoch in range(count):
        set_epoch(loaders, epoch)
        for loader in loaders:
            batches += [(images.clone(), indices.tolist()) for images, _, _, indices in loader]
    return batches


def loaders(items, augment, cache, sampler="random"):
    return build_train_loaders(
        items, count=2, seed=3, height=32, width=16, augment=augment, batch_size=4, sampler=sampler,
        num_instances=2, cache=cache,
    )  # fmt: skip


@pytest.mark.parametrize("augment", [[name] for name in REID_AUGMENTATIONS] + [list(REID_AUGMENTATIONS)])
def test_batches_equal_decoding_every_read(items, augment):
    """Every augmentation (random_patch paints on its image: the cached one must stay clean)."""
    cache = DecodedImages(1 << 30)
    plain = epochs(loaders(items, augment, None))
    cached = epochs(loaders(items, augment, cache))
    assert len(plain) == len(cached) > 0
    for (a, ia), (b, ib) in zip(plain, cached, strict=True):
        assert ia == ib and torch.equal(a, b)
    # two models x two epochs read each image four times, and decoded it once
    assert cache.misses == len(items) and cache.hits == 3 * len(items)


def test_identity_sampler_repeats_and_test_loader_share_the_cache(items):
    cache = DecodedImages(1 << 30)
    plain = epochs(loaders(items[:10], ["random_flip", "random_erase"], None, "identity"))
    cached = epochs(loaders(items[:10], ["random_flip", "random_erase"], cache, "identity"))
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(plain, cached, strict=True))
    misses = cache.misses
    test = [build_test_loader(items, height=32, width=16, batch_size=5, cache=c) for c in (None, cache)]
    for (a, *_), (b, *_) in zip(*test, strict=True):
        assert torch.equal(a, b)
    assert cache.misses == misses + len(items) - len(set(i[0] for i in items[:10]) & {i[0] for i in items})


def test_a_full_budget_decodes_again_and_gives_the_same_images(items):
    image_bytes = 32 * 16 * 3
    cache = DecodedImages(3 * image_bytes)
    plain = epochs(loaders(items, ["random_flip"], None), 1)
    cached = epochs(loaders(items, ["random_flip"], cache), 1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(plain, cached, strict=True))
    assert len(cache.images) == 3 and cache.used == 3 * image_bytes
    assert cache.misses == 2 * len(items) - 3  # only the three kept are read again


def test_plan():
    paths = [f"{i}.jpg" for i in range(100)] * 2  # repeats count once
    kept = plan_image_cache("auto", paths, height=128, width=64, workers=0, budget=1 << 30)
    assert kept.cache is not None and kept.record()["kept"] is True
    assert kept.estimate == int(100 * 128 * 64 * 3 * 1.1)
    assert "100 images at 128x64" in kept.reason
    assert plan_image_cache("none", paths, height=128, width=64, workers=0).cache is None
    workers = plan_image_cache("auto", paths, height=128, width=64, workers=2)
    assert workers.cache is None and "2 loader workers" in workers.reason
    small = plan_image_cache("auto", paths, height=128, width=64, workers=0, budget=1 << 20)
    assert small.cache is None and "exceed 1 MiB" in small.reason


def test_a_worker_starts_with_an_empty_cache(items):
    """Pickled into a worker process, the cache holds nothing of the parent's (no copy per worker)."""
    import pickle

    cache = DecodedImages(1 << 30)
    cache.read(items[0][0], lambda image: image)
    copy = pickle.loads(pickle.dumps(cache))
    assert len(cache.images) == 1 and copy.images == {} and copy.used == 0


def test_a_run_records_the_cache_and_trains_the_same(splits, tmp_path):  # noqa: F811
    kept, _ = run(splits, tmp_path / "kept")
    none, _ = run(splits, tmp_path / "none", image_cache="none")
    for a, b in zip(kept.members, none.members, strict=True):
        for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    step = json.loads((tmp_path / "kept" / "metrics.json").read_text())["step"]
    assert step["image_cache"]["setting"] == "auto" and step["image_cache"]["kept"] is True
    assert kept.task.images.cache.hits > 0
    step = json.loads((tmp_path / "none" / "metrics.json").read_text())["step"]
    assert step["image_cache"] == {**step["image_cache"], "setting": "none", "kept": False}
