"""The one image reader: a decompression bomb (a small file claiming a huge canvas) is one line
naming the file wherever images are read: training loaders (with and without workers), the
extractor, and the demo's gallery thumbnails."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from reidgraft.data.loaders import build_test_loader
from reidgraft.images import DEFAULT_MAX_IMAGE_PIXELS, ImageFolderError, ImageReadError, image_files, read_rgb


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


def _crop(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 16), (90, 30, 60)).save(path)


def test_linked_subfolders_are_read_once_and_loops_end(tmp_path):
    elsewhere, folder = tmp_path / "elsewhere", tmp_path / "split"
    _crop(elsewhere / "0003_c1s1_000001_00.jpg")
    _crop(folder / "own" / "0002_c1s1_000001_00.jpg")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)  # rglob skips this in 3.11
    (folder / "own" / "again").symlink_to(elsewhere, target_is_directory=True)  # the same folder twice
    (folder / "own" / "up").symlink_to(folder, target_is_directory=True)  # a loop
    (folder / "notes.txt").write_text("not an image")
    found = [os.path.relpath(path, folder) for path in image_files(folder)]
    assert found in (
        ["linked/0003_c1s1_000001_00.jpg", "own/0002_c1s1_000001_00.jpg"],
        ["own/0002_c1s1_000001_00.jpg", "own/again/0003_c1s1_000001_00.jpg"],
    )


def test_a_broken_link_is_named(tmp_path):
    _crop(tmp_path / "0002_c1s1_000001_00.jpg")
    (tmp_path / "0004_c2s1_000001_00.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(
        ImageFolderError, match=r"0004_c2s1_000001_00.jpg is a link to a missing file .*gone.jpg"
    ):
        image_files(tmp_path)


def _listed_without_root(folder):
    """image_files(folder) as an unprivileged user (as root every folder is readable): its
    result, or the error's message."""
    if os.geteuid() != 0:
        try:
            return image_files(folder)
        except ImageFolderError as error:
            return str(error)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # (only the standard library runs here)
        try:
            os.setegid(65534)
            os.seteuid(65534)
            try:
                answer = repr(image_files(folder))
            except ImageFolderError as error:
                answer = str(error)
            os.write(writing, answer.encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    return answer


def test_an_unreadable_subfolder_is_named_not_skipped():
    top = Path(tempfile.mkdtemp())  # (not under pytest's tmp_path: that is private to root)
    try:
        os.chmod(top, 0o755)
        _crop(top / "a" / "0002_c1s1_000001_00.jpg")
        _crop(top / "hidden" / "0003_c1s1_000001_00.jpg")
        for folder in (top / "a", top / "hidden"):
            os.chmod(folder, 0o755)
        os.chmod(top / "hidden", 0o000)
        answer = _listed_without_root(top)
        assert answer == (
            f"cannot read folder {top / 'hidden'} (Permission denied) under {top}; make it readable, "
            "or move it out of the folder"
        )
    finally:
        os.chmod(top / "hidden", 0o755)
        shutil.rmtree(top)
