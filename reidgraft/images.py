"""The one reader of image files: any decoding failure, a decompression bomb included, becomes
`ImageReadError`, one line naming the file. A leaf: it imports nothing of reidgraft's."""

from __future__ import annotations

import os
import re

from PIL import Image, UnidentifiedImageError


class ImageReadError(OSError):
    """An image file could not be decoded; the message names the file.

    A DataLoader worker's error reaches the main process re-raised as this class with the
    worker's whole traceback as its message ("Caught ImageReadError in DataLoader worker process
    0 ..."); the original message, which names the file, is kept instead."""

    def __init__(self, message: str = ""):
        if message.startswith("Caught ") and f"{type(self).__name__}: " in message:
            message = message.rstrip().rsplit(f"{type(self).__name__}: ", 1)[1]
        super().__init__(message)


class ImageFolderError(ImageReadError):
    """A folder of images that cannot be listed whole (an unreadable subfolder, a broken link):
    refused rather than read without some of its images."""


# The image files a folder of crops may hold (the `folder` dataset and the demo's galleries).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[str]:
    """Every image file under `folder`, in subfolders too, sorted by path. Linked subfolders are
    followed (Path.rglob does not, in Python 3.11); a folder reached twice (two links, or a link
    back up the tree) is read once. An unreadable subfolder or a broken link is ImageFolderError
    naming it: images are never left out silently."""
    top = os.fspath(folder)
    seen: set[tuple[int, int]] = set()
    found = []

    def refuse(error: OSError) -> None:
        raise ImageFolderError(
            f"cannot read folder {error.filename} ({error.strerror or error}) under {top}; make it "
            "readable, or move it out of the folder"
        )

    for here, subfolders, files in os.walk(top, onerror=refuse, followlinks=True):
        status = os.stat(here)
        if (status.st_dev, status.st_ino) in seen:
            subfolders.clear()  # already read through another path
            continue
        seen.add((status.st_dev, status.st_ino))
        subfolders.sort()
        for name in files:
            if not name.lower().endswith(suffixes):
                continue
            path = os.path.join(here, name)
            if not os.path.exists(path):  # (a link to nothing)
                raise ImageFolderError(
                    f"{path} is a link to a missing file ({os.readlink(path)}); restore its target or "
                    "remove the link"
                )
            if os.path.isfile(path):
                found.append(path)
    return sorted(found)


# The most pixels an image may have (REIDGRAFT_MAX_IMAGE_PIXELS; default PIL's own guard): a
# person crop is far smaller, and a small file can claim a huge canvas (a decompression bomb).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def max_image_pixels() -> int:
    value = os.environ.get("REIDGRAFT_MAX_IMAGE_PIXELS", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_IMAGE_PIXELS


def read_rgb(path: str) -> Image.Image:
    """Open an image as RGB, or raise ImageReadError naming the file (torchreid's reader would
    retry forever): every image reidgraft reads comes through here. An image of more than
    `max_image_pixels()` pixels is refused from its header, before it is decoded."""
    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = limit  # PIL's own guard (an error at twice it) follows the setting
    try:
        with Image.open(path) as image:
            if image.width * image.height > limit:
                raise _too_large(path, image.width * image.height, limit, f"{image.width}x{image.height} is ")
            return image.convert("RGB")
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:  # PIL's own guard, at twice its limit, on opening
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, int(found.group(1)) if found else 0, limit) from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from None


def _too_large(path: str, pixels: int, limit: int, size: str = "") -> ImageReadError:
    count = f"{size}{pixels:,} pixels" if pixels else "more pixels than that"
    return ImageReadError(
        f"cannot read image {path}: {count}, over the limit of {limit:,} (a decompression bomb; "
        "for a real image that large, set REIDGRAFT_MAX_IMAGE_PIXELS higher)"
    )
