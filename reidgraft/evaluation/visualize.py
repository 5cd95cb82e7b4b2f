"""Ranked-result pictures: one query and its top gallery matches in a row, framed right or wrong.

The row shows what the retrieval metric scores: gallery items showing the query's person under the
query's camera are skipped (the Market-1501 protocol ignores them), a result is a true match when it
shows the query's person (same pid, and the pid is neither 0, a distractor, nor -1, junk).

Layout, left to right: a margin, the query cell, a wider gap, then the result cells separated by a
small gap, then a margin. Every cell is the image (cell_height x cell_width) inside a coloured frame,
with a caption strip below; each cell is drawn on its own canvas, so a long caption is clipped to its
cell instead of running into the next one.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..files import atomic_write
from ..images import ImageReadError, read_rgb
from .retrieval import UNKNOWN_CAMERA, camera_label

# Frame colours (RGB).
QUERY_COLOUR = (0, 90, 255)
MATCH_COLOUR = (0, 180, 0)
MISMATCH_COLOUR = (220, 0, 0)
BACKGROUND_COLOUR = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)

# Layout constants, in pixels.
FRAME = 4  # frame thickness around each image
MARGIN = 4  # empty border around the whole grid
GAP = 4  # between two result cells
QUERY_GAP = 16  # between the query cell and the first result
CAPTION_LINE_HEIGHT = 12
CAPTION_LINES = 3  # the query caption: "query" / "pid P" / "cam C"
CAPTION_HEIGHT = CAPTION_LINES * CAPTION_LINE_HEIGHT + 4

# Identities that never count as a true match: distractors (0) and junk (-1).
_NON_IDENTITIES = (0, -1)


def cell_left(slot: int, cell_width: int) -> int:
    """The x of a cell's outer (framed) left edge; slot 0 is the query, slot k the rank-k result."""
    outer_width = cell_width + 2 * FRAME
    if slot == 0:
        return MARGIN
    return MARGIN + outer_width + QUERY_GAP + (slot - 1) * (outer_width + GAP)


def grid_size(num_results: int, cell_height: int, cell_width: int) -> tuple[int, int]:
    """The (width, height) of a grid showing the query and `num_results` results."""
    outer_width = cell_width + 2 * FRAME
    right = cell_left(num_results, cell_width) + outer_width if num_results else MARGIN + outer_width
    height = MARGIN + cell_height + 2 * FRAME + CAPTION_HEIGHT + MARGIN
    return right + MARGIN, height


def _load_image(path: str | Path, cell_height: int, cell_width: int) -> Image.Image:
    """Read an image as RGB, resized to the cell; a missing or unreadable file is a ValueError."""
    try:
        image = read_rgb(str(path))
    except ImageReadError as error:
        raise ValueError(f"{error}; check the path and the file") from None
    return image.resize((cell_width, cell_height), Image.Resampling.BILINEAR)


def _draw_cell(
    image: Image.Image, frame_colour: tuple[int, int, int], caption: Sequence[str], font
) -> Image.Image:
    """One framed image with its caption below, on its own canvas (so text cannot spill over)."""
    cell_width, cell_height = image.size
    canvas = Image.new(
        "RGB", (cell_width + 2 * FRAME, cell_height + 2 * FRAME + CAPTION_HEIGHT), BACKGROUND_COLOUR
    )
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, cell_width + 2 * FRAME - 1, cell_height + 2 * FRAME - 1), fill=frame_colour)
    canvas.paste(image, (FRAME, FRAME))
    top = cell_height + 2 * FRAME + 2
    for line_number, line in enumerate(caption):
        draw.text((1, top + line_number * CAPTION_LINE_HEIGHT), line, fill=TEXT_COLOUR, font=font)
    return canvas


def ranked_results_grid(
    query_path: str,
    query_pid: int,
    query_camid: int,
    gallery_paths: Sequence[str],
    gallery_pids: Sequence[int],
    gallery_camids: Sequence[int],
    ranked_indices: Sequence[int],
    output: str | Path,
    *,
    top: int = 10,
    cell_height: int = 128,
    cell_width: int = 64,
) -> Path:
    """Write a PNG of the query (blue frame) and its first `top` results in rank order.

    `ranked_indices` index the gallery lists, best first. Results showing the query's person under
    the query's camera are skipped, as the metric skips them; the rest are framed green when they
    show the query's person and red otherwise, captioned with their rank (among the shown results)
    and pid. Fewer than `top` cells are drawn when the ranking runs out. The file is written to a
    temporary name beside `output` and renamed; parent folders are created. Returns `output`.
    """
    if not len(gallery_paths) == len(gallery_pids) == len(gallery_camids):
        raise ValueError(
            f"gallery lists differ in length: {len(gallery_paths)} paths, {len(gallery_pids)} pids, "
            f"{len(gallery_camids)} camids; pass one pid and one camid per gallery image"
        )
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if cell_height < 1 or cell_width < 1:
        raise ValueError(f"cell size must be positive, got {cell_height} x {cell_width}")

    query_pid, query_camid = int(query_pid), int(query_camid)
    shown: list[int] = []
    for position in ranked_indices:
        index = operator.index(position)
        if not 0 <= index < len(gallery_paths):
            raise ValueError(f"ranked index {index} is outside the gallery of {len(gallery_paths)} items")
        same_camera = int(gallery_camids[index]) == query_camid != UNKNOWN_CAMERA
        if int(gallery_pids[index]) == query_pid and same_camera:  # (the protocol leaves these out)
            continue
        shown.append(index)
        if len(shown) == top:
            break

    font = ImageFont.load_default()
    width, height = grid_size(len(shown), cell_height, cell_width)
    grid = Image.new("RGB", (width, height), BACKGROUND_COLOUR)
    query_cell = _draw_cell(
        _load_image(query_path, cell_height, cell_width),
        QUERY_COLOUR,
        ["query", f"pid {query_pid}", camera_label(query_camid)],  # (numbered as the dataset does)
        font,
    )
    grid.paste(query_cell, (cell_left(0, cell_width), MARGIN))
    for rank, index in enumerate(shown, start=1):
        pid = int(gallery_pids[index])
        is_match = pid == query_pid and pid not in _NON_IDENTITIES
        cell = _draw_cell(
            _load_image(gallery_paths[index], cell_height, cell_width),
            MATCH_COLOUR if is_match else MISMATCH_COLOUR,
            [f"rank {rank}", f"pid {pid}"],
            font,
        )
        grid.paste(cell, (cell_left(rank, cell_width), MARGIN))

    output = Path(output)
    atomic_write(output, lambda stream: grid.save(stream, format="PNG"))
    return output
