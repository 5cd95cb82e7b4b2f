import numpy as np
import pytest
from PIL import Image

from reidgraft.evaluation import visualize
from reidgraft.evaluation.visualize import ranked_results_grid

CELL_HEIGHT, CELL_WIDTH = 40, 24
QUERY_PID, QUERY_CAMID = 5, 0
SKIPPED_COLOUR = (255, 0, 255)

# (pid, camid, colour, format) per gallery item; the ranking below is gallery order.
GALLERY = [
    (5, 2, (230, 230, 0), "JPEG"),  # rank 1: the query's person, other camera -> green
    (5, 0, SKIPPED_COLOUR, "PNG"),  # same person, same camera -> skipped
    (0, 1, (0, 200, 200), "JPEG"),  # rank 2: a distractor -> red
    (5, 3, (255, 140, 0), "PNG"),  # rank 3: the query's person -> green
    (7, 1, (120, 0, 160), "JPEG"),  # rank 4: another person -> red
    (8, 2, (0, 0, 160), "PNG"),  # beyond top
]


def solid_image(path, colour, image_format, size=(30, 50)):
    Image.new("RGB", size, colour).save(path, format=image_format)
    return str(path)


@pytest.fixture
def scene(tmp_path):
    """A query and a gallery of solid-colour images, plus the arguments the function takes."""
    query = solid_image(tmp_path / "query.jpg", (100, 100, 100), "JPEG")
    paths = [
        solid_image(tmp_path / f"g{i}.{fmt.lower().replace('jpeg', 'jpg')}", colour, fmt)
        for i, (_, _, colour, fmt) in enumerate(GALLERY)
    ]
    return dict(
        query_path=query,
        query_pid=QUERY_PID,
        query_camid=QUERY_CAMID,
        gallery_paths=paths,
        gallery_pids=[pid for pid, *_ in GALLERY],
        gallery_camids=[camid for _, camid, *_ in GALLERY],
        ranked_indices=list(range(len(GALLERY))),
    )


def expected_width(num_results):
    outer = CELL_WIDTH + 2 * visualize.FRAME
    gaps = visualize.QUERY_GAP + (num_results - 1) * visualize.GAP
    return 2 * visualize.MARGIN + (1 + num_results) * outer + gaps


def frame_pixel(grid, slot):
    """A pixel in the middle of a cell's left frame bar."""
    x = visualize.cell_left(slot, CELL_WIDTH) + visualize.FRAME // 2
    y = visualize.MARGIN + (CELL_HEIGHT + 2 * visualize.FRAME) // 2
    return grid.getpixel((x, y))


def test_grid_layout_frames_and_skipped_item(scene, tmp_path):
    output = tmp_path / "deep" / "er" / "grid.png"
    returned = ranked_results_grid(
        **scene, output=output, top=4, cell_height=CELL_HEIGHT, cell_width=CELL_WIDTH
    )

    assert returned == output
    with Image.open(output) as opened:
        assert opened.format == "PNG"
        grid = opened.convert("RGB")
    assert grid.width == expected_width(4)
    expected_height = 2 * visualize.MARGIN + CELL_HEIGHT + 2 * visualize.FRAME + visualize.CAPTION_HEIGHT
    assert grid.height == expected_height

    assert frame_pixel(grid, 0) == visualize.QUERY_COLOUR
    assert frame_pixel(grid, 1) == visualize.MATCH_COLOUR
    assert frame_pixel(grid, 2) == visualize.MISMATCH_COLOUR  # the pid-0 distractor
    assert frame_pixel(grid, 3) == visualize.MATCH_COLOUR
    assert frame_pixel(grid, 4) == visualize.MISMATCH_COLOUR
    # The frame is drawn all round: the bottom bar of rank 3 is green too.
    bottom_y = visualize.MARGIN + CELL_HEIGHT + 2 * visualize.FRAME - 2
    assert (
        grid.getpixel((visualize.cell_left(3, CELL_WIDTH) + CELL_WIDTH // 2, bottom_y))
        == visualize.MATCH_COLOUR
    )

    # Each cell shows its image, in rank order (centre pixel close to the source colour).
    pixels = np.asarray(grid).astype(int)
    centre_y = visualize.MARGIN + visualize.FRAME + CELL_HEIGHT // 2
    for slot, gallery_index in enumerate([0, 2, 3, 4], start=1):
        centre_x = visualize.cell_left(slot, CELL_WIDTH) + visualize.FRAME + CELL_WIDTH // 2
        assert np.abs(pixels[centre_y, centre_x] - GALLERY[gallery_index][2]).max() <= 12

    # Neither the skipped same-camera item nor the item beyond `top` appears anywhere.
    for colour in (SKIPPED_COLOUR, GALLERY[5][2]):
        assert not (np.abs(pixels - colour).max(axis=2) <= 40).any()

    # Written atomically: only the PNG is left in its folder.
    assert [path.name for path in output.parent.iterdir()] == ["grid.png"]


def test_fewer_cells_when_the_ranking_runs_out(scene, tmp_path):
    scene["ranked_indices"] = [1, 3, 0]  # the skipped item first, then two matches
    output = ranked_results_grid(
        **scene, output=tmp_path / "g.png", top=10, cell_height=CELL_HEIGHT, cell_width=CELL_WIDTH
    )
    with Image.open(output) as grid:
        grid = grid.convert("RGB")
    assert grid.width == expected_width(2)
    assert frame_pixel(grid, 1) == visualize.MATCH_COLOUR
    assert frame_pixel(grid, 2) == visualize.MATCH_COLOUR


def test_distractor_and_junk_queries_never_match(scene, tmp_path):
    scene.update(
        query_pid=0, gallery_pids=[0, -1, 0, -1, 0, -1], gallery_camids=[1] * 6, ranked_indices=[0, 1]
    )
    output = ranked_results_grid(
        **scene, output=tmp_path / "g.png", top=2, cell_height=CELL_HEIGHT, cell_width=CELL_WIDTH
    )
    with Image.open(output) as grid:
        grid = grid.convert("RGB")
    assert frame_pixel(grid, 1) == visualize.MISMATCH_COLOUR
    assert frame_pixel(grid, 2) == visualize.MISMATCH_COLOUR


def test_overwrites_an_existing_file(scene, tmp_path):
    output = tmp_path / "g.png"
    output.write_bytes(b"old")
    ranked_results_grid(**scene, output=output, top=1, cell_height=CELL_HEIGHT, cell_width=CELL_WIDTH)
    with Image.open(output) as grid:
        assert grid.width == expected_width(1)


def test_missing_query_image_names_the_file(scene, tmp_path):
    scene["query_path"] = str(tmp_path / "nowhere.jpg")
    with pytest.raises(ValueError, match="nowhere.jpg"):
        ranked_results_grid(**scene, output=tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_unreadable_gallery_image_names_the_file(scene, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    scene["gallery_paths"][2] = str(broken)
    with pytest.raises(ValueError, match="broken.jpg"):
        ranked_results_grid(**scene, output=tmp_path / "g.png")
    assert [path.name for path in tmp_path.iterdir() if path.suffix not in (".jpg", ".png")] == []


@pytest.mark.parametrize("field", ["gallery_paths", "gallery_pids", "gallery_camids"])
def test_mismatched_gallery_lengths(scene, tmp_path, field):
    scene[field] = scene[field][:-1]
    with pytest.raises(ValueError, match="differ in length"):
        ranked_results_grid(**scene, output=tmp_path / "g.png")


@pytest.mark.parametrize("top", [0, -3])
def test_top_below_one(scene, tmp_path, top):
    with pytest.raises(ValueError, match="top"):
        ranked_results_grid(**scene, output=tmp_path / "g.png", top=top)


def test_ranked_index_outside_the_gallery(scene, tmp_path):
    scene["ranked_indices"] = [0, len(GALLERY)]
    with pytest.raises(ValueError, match="outside the gallery"):
        ranked_results_grid(**scene, output=tmp_path / "g.png")
