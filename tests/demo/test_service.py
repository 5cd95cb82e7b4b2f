"""The demo run as a service: its gallery cache in a folder of the user's choosing (a read-only
run folder is served), a full disk named, kill -9 leftovers removed, uploads limited in size and
removed when SIGTERM (docker stop, systemd) stops the server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from reidgraft.cli import demo as demo_app
from reidgraft.demo import DemoError, dataset_gallery
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def _gallery(run_config, folder: Path, copies: int = 1) -> Path:
    folder.mkdir()
    for path in dataset_gallery("synthetic", run_config["root"]).paths:
        for copy in range(copies):
            shutil.copy(path, folder / f"{copy}-{Path(path).name}")
    return folder


def _args(run: Path, gallery: Path, *more: str):
    return demo_app.parse_args(["--checkpoint", str(run), "--model", "0", "--gallery", str(gallery), *more])


def _read_only_copy(demo_run: Path, small_disk) -> Path:
    disk = small_disk(64)
    run = disk / "run"
    shutil.copytree(demo_run, run)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return run


def test_a_read_only_run_folder_is_served_from_a_cache_folder_of_ones_choosing(
    demo_run, run_config, tmp_path, small_disk
):
    gallery = _gallery(run_config, tmp_path / "gallery")
    run = _read_only_copy(demo_run, small_disk)
    with pytest.raises(DemoError) as raised:
        demo_app.prepare(_args(run, gallery))
    assert str(raised.value) == (
        f"the gallery cache {run / 'gallery_cache'} cannot be written (Read-only file system); pass "
        "--cache-dir DIR to keep it in another folder"
    )
    cache = tmp_path / "cache"
    (searcher,), _ = demo_app.prepare(_args(run, gallery, "--cache-dir", str(cache)))
    assert len(searcher.index) == len(searcher.gallery) and len(list(cache.glob("model0-*.npz"))) == 1
    demo_app.prepare(_args(run, gallery, "--cache-dir", str(cache)))  # the second start reads it


def test_a_cache_already_in_a_read_only_run_folder_is_read(demo_run, run_config, tmp_path, small_disk):
    gallery = _gallery(run_config, tmp_path / "gallery")
    disk = small_disk(64)
    shutil.copytree(demo_run, disk / "run")
    demo_app.prepare(_args(disk / "run", gallery))  # indexes into the run folder
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    (searcher,), _ = demo_app.prepare(_args(disk / "run", gallery))
    assert len(searcher.index) == len(searcher.gallery)


def test_a_full_cache_disk_is_one_line_naming_the_file(demo_run, run_config, tmp_path, small_disk):
    gallery = _gallery(run_config, tmp_path / "gallery", copies=8)  # 8 x the gallery: about 2 MB of features
    cache = small_disk(0.25)
    result = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--checkpoint", str(demo_run), "--model", "0",
         "--gallery", str(gallery), "--cache-dir", str(cache), "--port", str(free_port())],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(
        f"demo: no space left on the device holding {cache}/model0-"
    ) and "Traceback" not in (result.stderr)
    assert not [path for path in cache.iterdir() if path.name.endswith(".tmp")]


def test_leftovers_of_a_killed_indexing_are_removed_at_the_next(demo_run, run_config, tmp_path):
    gallery = _gallery(run_config, tmp_path / "gallery")
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / ".model0-0123.partial.npz.4194303-5.abcd.tmp"  # (no such process)
    dead.write_bytes(b"half")
    alive = cache / f".model0-0123.npz.{os.getpid()}-0.efgh.tmp"  # a write in progress: kept
    alive.write_bytes(b"being written")
    demo_app.prepare(_args(demo_run, gallery, "--cache-dir", str(cache)))
    assert not dead.exists() and alive.exists()


def test_a_bad_upload_limit_is_one_line(demo_run, run_config, tmp_path):
    gallery = _gallery(run_config, tmp_path / "gallery")
    with pytest.raises(DemoError, match=r"^--max-upload-mb 0: give a size above 0, in MB \(e.g. 10\)$"):
        demo_app.prepare(_args(demo_run, gallery, "--max-upload-mb", "0"))


@pytest.mark.slow
def test_an_upload_over_the_limit_is_refused_before_it_is_stored(
    demo_run, run_config, tmp_path, gradio_temp_dir
):
    from gradio_client import Client, handle_file

    gallery = _gallery(run_config, tmp_path / "gallery")
    page = demo_app.build_app(*demo_app.prepare(_args(demo_run, gallery)))
    url = demo_app.launch(page, "127.0.0.1", free_port(), max_upload_mb=0.05)
    try:
        client = Client(url, verbose=False, download_files=str(gradio_temp_dir))
        big = tmp_path / "big.png"
        Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)).save(big)  # ~120 KB, incompressible
        assert big.stat().st_size > 0.05 * 1024 * 1024
        with pytest.raises(Exception, match="(?i)too large|maximum|413"):
            client.predict(handle_file(str(big)), 3, api_name="/search")
        assert not [path for path in page.upload_file_set if Path(path).name == "big.png"]
        small = dataset_gallery("synthetic", run_config["root"]).example_queries[0]
        results, _, _ = client.predict(handle_file(small), 3, api_name="/search")
        assert len(results) == 3
    finally:
        page.close()


def _wait_for(predicate, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_stops_the_server_with_143_and_removes_its_uploads(demo_run, run_config, tmp_path):
    from gradio_client import Client, handle_file

    gallery = _gallery(run_config, tmp_path / "gallery")
    uploads = tmp_path / "gradio"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--checkpoint", str(demo_run), "--model", "0",
         "--gallery", str(gallery), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "GRADIO_TEMP_DIR": str(uploads)},
    )  # fmt: skip
    try:
        for line in process.stdout:
            if line.startswith("serving on"):
                break
        client = Client(
            f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "downloads")
        )
        query = dataset_gallery("synthetic", run_config["root"]).example_queries[0]
        client.predict(handle_file(query), 3, api_name="/search")
        stored = [path for path in uploads.rglob("*") if path.is_file()]
        assert any(path.name == Path(query).name for path in stored)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert not [path for path in uploads.rglob("*") if path.is_file()]


@pytest.mark.slow
def test_sigterm_during_indexing_exits_143_and_leaves_no_temporary_file(demo_run, run_config, tmp_path):
    gallery = _gallery(run_config, tmp_path / "gallery", copies=60)
    cache = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--checkpoint", str(demo_run), "--model", "0",
         "--gallery", str(gallery), "--cache-dir", str(cache), "--batch-size", "8",
         "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(cache.is_dir)  # made when the extraction starts
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "demo: terminated; temporary files were removed, nothing half-written was kept"
    ), err
    assert not [path for path in cache.iterdir() if path.name.endswith(".tmp")]
