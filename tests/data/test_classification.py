"""Classification data: the built-in digits, the CIFAR layout check, seeded loaders."""

import socket

import numpy as np
import pytest
import torch

from reidgraft.data import DataMissingError, load_classification_dataset
from reidgraft.data.classification import build_classification_loaders, build_classification_test_loader
from reidgraft.data.loaders import set_epoch


@pytest.fixture(scope="module")
def digits():
    return load_classification_dataset("digits", "unused")


def test_digits_is_the_real_bundled_set_upscaled_with_a_fixed_stratified_split(digits):
    from sklearn.datasets import load_digits

    assert digits.train_images.shape == (1347, 32, 32, 3) and digits.test_images.shape == (450, 32, 32, 3)
    assert digits.train_images.dtype == np.uint8 and digits.num_classes == 10
    # Every class in both parts, in the original proportions (stratified).
    original = np.bincount(load_digits().target) / 1797
    np.testing.assert_allclose(np.bincount(digits.test_labels) / 450, original, atol=0.01)
    again = load_classification_dataset("digits", "unused")
    assert np.array_equal(again.test_images, digits.test_images)
    # Grey: the three channels are equal; bright strokes on a dark background.
    assert np.array_equal(digits.train_images[..., 0], digits.train_images[..., 2])
    assert digits.train_images.max() == 255 and np.median(digits.train_images) < 64


def test_loaders_differ_per_model_and_repeat_per_seed(digits):
    def first_batches(seed):
        loaders = build_classification_loaders(
            digits, count=2, seed=seed, augment=["random_crop", "random_flip"], batch_size=16
        )
        set_epoch(loaders, 1)
        return [next(iter(loader)) for loader in loaders]

    (a0, b0), (a1, b1) = first_batches(5), first_batches(5)
    assert torch.equal(a0[0], a1[0]) and torch.equal(b0[0], b1[0])
    assert not torch.equal(a0[2], b0[2])  # model 1 sees other images first
    test_images, test_labels, _ = next(iter(build_classification_test_loader(digits, batch_size=450)))
    assert test_images.shape == (450, 3, 32, 32) and torch.equal(
        test_labels, torch.from_numpy(digits.test_labels)
    )
    assert abs(float(test_images.mean())) < 0.05  # normalised with the set's statistics


def test_missing_cifar_names_the_folder_and_files_and_never_downloads(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(DataMissingError) as missing:
        load_classification_dataset("cifar100", tmp_path)
    message = str(missing.value)
    assert f"{tmp_path / 'cifar-100-python'} lacks train, test, meta" in message
    assert "cifar-100-python.tar.gz" in message and "--download" in message
    assert list(tmp_path.iterdir()) == []  # nothing created

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(
        DataMissingError, match="lacks data_batch_2, data_batch_3, data_batch_4, data_batch_5"
    ):
        load_classification_dataset("cifar10", tmp_path)


def test_damaged_cifar_files_are_reported_not_loaded(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DataMissingError, match="cifar100 under .* is unusable"):
        load_classification_dataset("cifar100", tmp_path)


def test_unknown_names(digits):
    with pytest.raises(
        ValueError, match="unknown dataset 'cifar1000'; choose one of: cifar10, cifar100, digits"
    ):
        load_classification_dataset("cifar1000", "x")
    with pytest.raises(ValueError, match="unknown transform 'color_jitter'"):
        build_classification_loaders(digits, count=1, seed=0, augment=["color_jitter"], batch_size=8)
