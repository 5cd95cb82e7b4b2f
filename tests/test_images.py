"""The one image reader: a decompression bomb (a small file claiming a huge canvas) is one line
naming the file wherever images are read: training loaders (with and without workers), the
extractor, and the demo's gallery thumbnails."""

import pytest
from PIL import Image

from reidgraft.data.loaders import build_test_loader
from reidgraft.images import DEFAULT_MAX_IMAGE_PIXELS, ImageReadError, read_rgb


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 27 KB PNG of 15000 x 15000 one-bit pixels: 225M pixels once decoded."""
    path = tmp_path_factory.mktemp("bomb") / "0001_c1s1_000001_00.png"
    Image.new("1", (15000, 15000)).save(path)
    assert path.stat().st_size < 100_000
    return path


def test_a_decompression_bomb_is_refused_from_its_header_naming_the_file(bomb):
    with pytest.raises(ImageReadError) as caught:
        read_rgb(str(bomb))
    message = str(caught.value)
    assert message.startswith(f"cannot read image {bomb}: 225,000,000 pixels, over the limit of")
    assert f"{DEFAULT_MAX_IMAGE_PIXELS:,}" in message and "REIDGRAFT_MAX_IMAGE_PIXELS" in message
    assert "\n" not in message


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bomb_in_a_loader_names_the_file(bomb, workers):
    loader = build_test_loader([(str(bomb), 1, 0)], height=32, width=16, batch_size=2, workers=workers)
    with pytest.raises(ImageReadError) as caught:
        list(loader)
    assert str(caught.value).startswith(f"cannot read image {bomb}") and "\n" not in str(caught.value)


def test_the_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    image = tmp_path / "crop.png"
    Image.new("RGB", (64, 128)).save(image)
    assert read_rgb(str(image)).size == (64, 128)
    monkeypatch.setenv("REIDGRAFT_MAX_IMAGE_PIXELS", "8000")
    with pytest.raises(ImageReadError, match="64x128 is 8,192 pixels, over the limit of 8,000"):
        read_rgb(str(image))
    monkeypatch.setenv("REIDGRAFT_MAX_IMAGE_PIXELS", "9000")
    assert read_rgb(str(image)).size == (64, 128)


def test_the_extractor_names_a_bomb(bomb, tiny_run):
    from reidgraft import FeatureExtractor

    extractor = FeatureExtractor(tiny_run, device="cpu")
    with pytest.raises(ImageReadError, match=f"cannot read image {bomb}"):
        extractor([str(bomb)])
