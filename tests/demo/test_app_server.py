"""The demo served for real on 127.0.0.1: driven by gradio_client and by headless Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from reidgraft.cli import demo as demo_app
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
CAPTION = re.compile(r"^#(\d+) d=\S+ (pid -?\d+ cam \d+ (✓|✗|\(same camera\))|\S+)$")


@pytest.fixture(scope="module")
def server(demo_run, planted):
    """app.py's page over the planted folder gallery, model 0 beside model 1 (--compare)."""
    folder, query = planted
    args = demo_app.parse_args(
        ["--checkpoint", str(demo_run), "--model", "0", "--gallery", str(folder),
         "--compare", str(demo_run), "--compare-model", "1"]
    )  # fmt: skip
    page = demo_app.build_app(*demo_app.prepare(args))
    url = demo_app.launch(page, "127.0.0.1", free_port())
    yield url, query
    page.close()


@pytest.fixture(scope="module")
def client(server, gradio_temp_dir):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(gradio_temp_dir))


def search(client, image: Path, top_k: int):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)), top_k, api_name="/search")


def test_binds_loopback_only(server):
    assert server[0].startswith("http://127.0.0.1:")


def test_search_returns_top_k_captioned_results_planted_copy_first(client, server):
    _, query = server
    results, note, compared, compared_note, data = search(client, query, 6)
    assert len(results) == 6 and len(compared) == 6
    captions = [item["caption"] for item in results]
    for rank, caption in enumerate(captions, start=1):
        found = CAPTION.match(caption)
        assert found and int(found.group(1)) == rank, caption
    assert captions[0].startswith("#1 d=") and captions[0].endswith(" planted.jpg")
    assert compared[0]["caption"].endswith(" planted.jpg")  # the other model finds it first too
    assert Path(results[0]["image"]).is_file()
    assert re.search(r"query pid \d+, cam \d+: AP \d+\.\d%", note) and "AP" in compared_note
    # the same results as data: one entry per model, each hit's file, distance, person and camera
    assert data["query"]["file"] == Path(query).name and len(data["models"]) == 2
    hits = data["models"][0]["results"]
    assert [hit["rank"] for hit in hits] == list(range(1, 7))
    assert hits[0]["gallery_file"].endswith("planted.jpg")
    for hit, caption in zip(hits, captions, strict=True):
        assert caption.startswith(f"#{hit['rank']} d={hit['distance']:.4g} ")
        if hit["pid"] is not None:  # cameras numbered as the dataset does, as the caption says
            assert f"pid {hit['pid']} cam {hit['camera']}" in caption
            assert hit["same_person"] == (hit["pid"] == data["query"]["pid"])
    assert data["models"][0]["average_precision"] is not None and data["query"]["camera"] >= 1


def test_a_non_image_upload_is_an_error_and_the_app_keeps_serving(client, server, tmp_path):
    from gradio_client.exceptions import AppError

    fake = tmp_path / "0001_c1s1_000001_00.jpg"
    fake.write_text("this is not a picture")
    with pytest.raises(AppError, match="0001_c1s1_000001_00.jpg is not an image that can be read"):
        search(client, fake, 3)
    results, *_ = search(client, server[1], 3)
    assert len(results) == 3


def browser():
    if not CHROMIUM.exists():
        if os.environ.get("REIDGRAFT_REQUIRE_BROWSER"):
            pytest.fail(
                f"{CHROMIUM} is missing; install Debian's chromium package (apt-get install chromium)"
            )
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def test_in_chromium_an_uploaded_query_shows_k_results(server):
    url, query = server
    top_k = 10
    with browser() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.set_input_files("input[type=file]", str(query))
            page.get_by_role("button", name="Search").click()
            results = page.locator("#results-0 .thumbnail-item img")
            results.nth(top_k - 1).wait_for(timeout=60_000)
            assert results.count() == top_k
            assert page.locator("#results-1 .thumbnail-item img").count() == top_k
            captions = page.locator("#results-0 .caption-label").all_inner_texts()
            assert captions[0].startswith("#1 d=") and captions[0].endswith("planted.jpg")
            for item in range(top_k):  # each caption below its picture, none over it
                picture = results.nth(item).bounding_box()
                caption = page.locator("#results-0 .caption-label").nth(item).bounding_box()
                assert caption["y"] >= picture["y"] + picture["height"] - 1, (item, picture, caption)
            assert page.get_by_text(re.compile(r"AP \d+\.\d%")).count() >= 1
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)
        finally:
            chromium.close()
    assert (ARTIFACTS / "demo-page.png").stat().st_size > 10_000


def test_uploads_are_deleted_once_old_and_rejections_log_one_line(
    demo_run, planted, tmp_path, capfd, gradio_temp_dir
):
    import time

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    folder, query = planted
    args = demo_app.parse_args(["--checkpoint", str(demo_run), "--model", "0", "--gallery", str(folder)])
    page = demo_app.build_app(*demo_app.prepare(args), cache_seconds=2)
    url = demo_app.launch(page, "127.0.0.1", free_port())
    try:
        client = Client(url, verbose=False, download_files=str(gradio_temp_dir))
        results, _, _ = search(client, query, 3)
        uploads = [Path(path) for path in page.upload_file_set]
        assert len(results) == 3 and uploads and all(path.is_file() for path in uploads)
        fake = tmp_path / "broken.jpg"
        fake.write_text("not a picture")
        capfd.readouterr()
        with pytest.raises(AppError, match="broken.jpg is not an image"):
            search(client, fake, 3)
        deadline = time.monotonic() + 30
        while any(path.exists() for path in uploads) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(path.exists() for path in uploads)
        made = [Path(path) for files in page.temp_file_sets for path in files]  # thumbnails too
    finally:
        page.close()
    assert made and not any(path.exists() for path in made)  # the rest goes at shutdown
    log = capfd.readouterr().err
    assert "Traceback" not in log
    (rejected,) = [line for line in log.splitlines() if "rejected" in line]
    assert rejected.startswith(
        "demo: rejected a query: broken.jpg is not an image that can be read; upload a JPEG or PNG "
        "file (UnidentifiedImageError: cannot identify image file "
    )
