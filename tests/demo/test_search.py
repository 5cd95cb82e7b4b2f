"""The demo's parts without a server: galleries, the cached index, the search and its verdicts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidgraft.demo import (
    DemoError,
    GallerySearch,
    dataset_gallery,
    folder_gallery,
    gallery_index,
    load_run_model,
    newest_run,
    parse_market_name,
    read_query,
    resolve_gallery,
)

REPO = Path(__file__).resolve().parents[2]


def test_market_names_give_pid_and_zero_based_camera():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("/x/y/-1_c6s2_000100_01.jpg") == (-1, 5)
    assert parse_market_name("0000_c3s1_000001_00.png") == (0, 2)
    assert parse_market_name("holiday.jpg") == (None, None)
    assert parse_market_name("0002_c0s1_000451_03.jpg") == (None, None)  # cameras count from 1


def test_folder_gallery_finds_images_recursively_and_skips_other_files(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 16)).save(tmp_path / "0007_c2s1_000001_00.jpg")
    Image.new("RGB", (8, 16)).save(tmp_path / "sub" / "someone.png")
    (tmp_path / "notes.txt").write_text("not an image")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 16)).save(elsewhere / "0009_c1s1_000001_00.jpg")
    (tmp_path / "linked").symlink_to(elsewhere, target_is_directory=True)  # followed
    gallery = folder_gallery(tmp_path)
    assert [gallery.name_of(i) for i in range(len(gallery))] == [
        "0007_c2s1_000001_00.jpg", "linked/0009_c1s1_000001_00.jpg", "sub/someone.png"
    ]  # fmt: skip
    assert gallery.pids == [7, 9, None] and gallery.camids == [1, 0, None]


def test_bad_galleries_are_named(tmp_path, run_config):
    with pytest.raises(DemoError, match="does not exist"):
        folder_gallery(tmp_path / "missing")
    with pytest.raises(DemoError, match="holds no images"):
        folder_gallery(tmp_path)
    with pytest.raises(DemoError, match="neither a re-ID dataset .* nor an existing folder"):
        resolve_gallery("market-2000", run_config)


def test_dataset_gallery_examples_are_queries_with_a_cross_camera_match(run_config):
    gallery = dataset_gallery("synthetic", run_config["root"])
    assert len(gallery) > 0 and gallery.example_queries
    assert len({parse_market_name(path)[0] for path in gallery.example_queries}) == len(
        gallery.example_queries
    )
    for path in gallery.example_queries:
        pid, camid = parse_market_name(path)
        assert any(p == pid and c != camid for p, c in zip(gallery.pids, gallery.camids))


def test_default_model_is_chosen_on_validation_never_on_the_test_set(demo_run, cpu, tmp_path):
    import json

    run = copy_of(demo_run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    for chosen_on, expected in (("validation", 1), ("test set", 0)):
        metrics["report"] = {"best_of_k": {"model": 1, "chosen_on": chosen_on}}
        (run / "metrics.json").write_text(json.dumps(metrics))
        assert load_run_model(run, None, cpu)[0].k == expected
    with pytest.raises(DemoError, match="--model 2: the run .* has models 0..1"):
        load_run_model(demo_run, 2, cpu)


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def test_index_is_cached_per_model_and_gallery_content(demo_run, run_config, tmp_path, cpu):
    run = copy_of(demo_run, tmp_path)
    gallery_dir = tmp_path / "gallery"
    shutil.copytree(dataset_gallery("synthetic", run_config["root"]).root, gallery_dir)
    gallery = folder_gallery(gallery_dir)
    model0 = load_run_model(run, 0, cpu)[0]

    built, cached = gallery_index(model0, gallery)
    assert not cached and len(built) == len(gallery)
    again, cached = gallery_index(model0, gallery)
    assert cached and np.array_equal(again.features, built.features)

    # Another model of the same run has its own features.
    other, cached = gallery_index(load_run_model(run, 1, cpu)[0], gallery)
    assert not cached and not np.array_equal(other.features, built.features)

    # One changed image invalidates the cache; the new index differs in that row only.
    changed = Path(gallery.paths[5])
    Image.open(changed).rotate(180).save(changed)
    rebuilt, cached = gallery_index(model0, folder_gallery(gallery_dir))
    assert not cached
    differs = np.flatnonzero(np.any(rebuilt.features != built.features, axis=1))
    assert differs.tolist() == [5]

    # A damaged cache file is rebuilt, not trusted and not fatal.
    for cache in (run / "gallery_cache").glob("*.npz"):
        cache.write_bytes(cache.read_bytes()[:100])
    repaired, cached = gallery_index(model0, folder_gallery(gallery_dir))
    assert not cached and np.array_equal(repaired.features, rebuilt.features)


def test_a_planted_copy_of_the_query_comes_first(demo_run, planted, cpu):
    folder, query = planted
    model = load_run_model(demo_run, 0, cpu)[0]
    gallery = folder_gallery(folder)
    search = GallerySearch(model, gallery, gallery_index(model, gallery)[0])
    result = search.search(read_query(query), 7, query_name=Path(query).name)
    assert len(result.hits) == 7
    first = result.hits[0]
    assert gallery.name_of(first.index) == "planted.jpg" and first.verdict is None
    assert abs(first.distance) < 1e-3 * result.hits[1].distance
    assert [hit.rank for hit in result.hits] == list(range(1, 8))
    assert [hit.distance for hit in result.hits] == sorted(hit.distance for hit in result.hits)
    assert search.caption(first).startswith("#1 d=") and search.caption(first).endswith(" planted.jpg")


def brute_force_ap(query: np.ndarray, gallery: np.ndarray, pids, camids, pid: int, camid: int) -> float:
    """AP by the textbook: sort by squared L2, drop same-pid-same-camera items, average precision at hits."""
    distances = ((gallery - query) ** 2).sum(axis=1)
    keep = ~((pids == pid) & (camids == camid))
    order = np.argsort(distances[keep], kind="stable")
    hits = (pids[keep] == pid)[order]
    precision_at_hits = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hits.mean())


def test_verdicts_captions_and_ap_follow_the_market_protocol(demo_run, run_config, cpu):
    model = load_run_model(demo_run, 1, cpu)[0]
    gallery = dataset_gallery("synthetic", run_config["root"])
    search = GallerySearch(model, gallery, gallery_index(model, gallery)[0])
    query = gallery.example_queries[1]
    pid, camid = parse_market_name(query)
    result = search.search(read_query(query), len(gallery), query_name=Path(query).name)
    assert (result.query_pid, result.query_camid) == (pid, camid)
    for hit in result.hits:
        other_pid, other_cam = gallery.pids[hit.index], gallery.camids[hit.index]
        expected = "other" if other_pid != pid else ("same camera" if other_cam == camid else "match")
        assert hit.verdict == expected
        mark = {"match": "✓", "other": "✗", "same camera": "(same camera)"}[expected]
        assert (
            search.caption(hit)
            == f"#{hit.rank} d={hit.distance:.4g} pid {other_pid} cam {other_cam + 1} {mark}"
        )

    embedded = search.embed(read_query(query))[0]
    features = search.index.features
    expected_ap = brute_force_ap(
        embedded, features, np.array(gallery.pids), np.array(gallery.camids), pid, camid
    )
    assert result.average_precision == pytest.approx(expected_ap, abs=1e-9)
    assert f"AP {100 * expected_ap:.1f}%" in result.note

    # The same image under a plain name: no identity, so no verdicts and no AP.
    anonymous = search.search(read_query(query), 3, query_name="upload.jpg")
    assert all(hit.verdict is None for hit in anonymous.hits) and anonymous.average_precision is None


def test_thumbnails_are_framed_by_verdict(demo_run, run_config, cpu):
    model = load_run_model(demo_run, 0, cpu)[0]
    gallery = dataset_gallery("synthetic", run_config["root"])
    search = GallerySearch(model, gallery, gallery_index(model, gallery)[0])
    query = gallery.example_queries[0]
    hits = search.search(read_query(query), len(gallery), query_name=Path(query).name).hits
    for verdict, colour in (("match", (0, 170, 0)), ("other", (215, 0, 0)), ("same camera", (70, 70, 70))):
        hit = next(hit for hit in hits if hit.verdict == verdict)
        thumbnail = search.thumbnail(hit)
        assert (
            thumbnail.getpixel((0, 0)) == colour and thumbnail.getpixel((thumbnail.width - 1, 80)) == colour
        )


def test_unreadable_queries_are_a_demo_error(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    Image.new("RGB", (64, 128), (10, 200, 30)).save(tmp_path / "whole.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
    for bad in (text, truncated):
        with pytest.raises(DemoError, match=f"{bad.name} is not an image that can be read"):
            read_query(bad)
    assert read_query(tmp_path / "whole.jpg").size == (64, 128)
    assert read_query(Image.new("L", (5, 9))).mode == "RGB"


def test_newest_run_and_the_message_without_one(tmp_path, demo_run):
    with pytest.raises(DemoError, match="no trained run under .*; make one with: .*tools/train.py"):
        newest_run(tmp_path / "runs")
    for name, age in (("old", 100), ("new", 0)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        checkpoint = tmp_path / "runs" / name / "checkpoint.pt"
        shutil.copy(demo_run / "checkpoint.pt", checkpoint)
        os.utime(checkpoint, (checkpoint.stat().st_mtime - age,) * 2)
    assert newest_run(tmp_path / "runs").name == "new"


def app_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), *map(str, args)], capture_output=True, text=True, cwd=cwd,
        timeout=300,
    )  # fmt: skip


def test_app_without_a_run_names_the_command_that_makes_one(tmp_path):
    result = app_cli(cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "demo: no trained run under runs/; make one with: "
        "bash scripts/setup.sh && .venv/bin/python tools/train.py"
    )


def test_app_bad_arguments_are_one_line(demo_run, tmp_path):
    result = app_cli("--checkpoint", demo_run, "--gallery", tmp_path / "nowhere")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "neither a re-ID dataset" in result.stderr
    result = app_cli("--checkpoint", tmp_path)
    assert (
        result.returncode == 2
        and result.stderr.strip() == f"demo: no checkpoint at {tmp_path / 'checkpoint.pt'}"
    )


def test_any_size_aspect_and_mode_is_searched(demo_run, run_config, cpu, tmp_path):
    model = load_run_model(demo_run, 0, cpu)[0]
    gallery = dataset_gallery("synthetic", run_config["root"])
    search = GallerySearch(model, gallery, gallery_index(model, gallery)[0])
    odd = [
        Image.new("RGBA", (1, 500), (9, 80, 200, 100)),
        Image.new("L", (900, 7), 128),
        Image.new("RGB", (2, 2)),
    ]
    for number, image in enumerate(odd):
        path = tmp_path / f"odd{number}.png"
        image.save(path)
        result = search.search(read_query(path), 4)
        assert len(result.hits) == 4 and np.isfinite([hit.distance for hit in result.hits]).all()


def test_the_runs_own_gallery_must_be_the_data_it_recorded(tiny_run, tmp_path):
    from reidgraft.data.datasets import synthetic_splits
    from reidgraft.demo import load_run_model, resolve_gallery

    other_root = tmp_path / "other"
    synthetic_splits(other_root, train_ids=4, test_ids=4, images_per_id=4, distractors=2, height=32, width=16)
    run_model, config = load_run_model(tiny_run, 0, torch.device("cpu"))
    assert len(resolve_gallery(None, config, run_model)) > 0  # its own data
    with pytest.raises(DemoError, match="was trained on another synthetic set"):
        resolve_gallery(None, {**config, "root": str(other_root)}, run_model)


def test_the_index_kind_is_part_of_the_cache_key(demo_run, run_config, tmp_path, cpu):
    run = copy_of(demo_run, tmp_path)
    gallery = dataset_gallery("synthetic", run_config["root"])
    model = load_run_model(run, 0, cpu)[0]
    for cache in (run / "gallery_cache").glob("*.npz"):  # left by other tests of the shared run
        cache.unlink()
    flat, cached = gallery_index(model, gallery, kind="flat")
    assert not cached and flat.kind == "flat"
    hnsw, cached = gallery_index(model, gallery, kind="hnsw")
    assert not cached and hnsw.kind == "hnsw"  # not the flat index from the cache
    again, cached = gallery_index(model, gallery, kind="hnsw")
    assert cached and again.kind == "hnsw" and again.params == hnsw.params
    assert len(list((run / "gallery_cache").glob("*.npz"))) == 2
    np.testing.assert_array_equal(again.features, flat.features)
    # ivf on a gallery smaller than its cells need: searched exactly, and said so
    small, _ = gallery_index(model, gallery, kind="ivf")
    assert small.kind == "flat" and "searching it exactly (flat) instead" in small.note


def test_an_interrupted_indexing_resumes_where_it_stopped(demo_run, run_config, tmp_path, cpu, monkeypatch):
    import reidgraft.demo.cache as demo

    run = copy_of(demo_run, tmp_path)
    folder = tmp_path / "gallery"
    folder.mkdir()
    for path in dataset_gallery("synthetic", run_config["root"]).paths[:40]:
        shutil.copy(path, folder)
    gallery = folder_gallery(folder)
    model = load_run_model(run, 0, cpu)[0]
    for cache in (run / "gallery_cache").glob("*"):
        cache.unlink()
    assert len(gallery) > 3 * 8  # chunks of 8 batches of 1 image: the third is interrupted
    one_pass, _ = gallery_index(model, gallery, batch_size=1, kind="flat")
    reference = np.array(one_pass.features)
    for cache in (run / "gallery_cache").glob("*"):
        cache.unlink()

    extract, calls = demo.extract_features, []

    def interrupted(models, items, **options):
        calls.append(len(items))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        return extract(models, items, **options)

    monkeypatch.setattr(demo, "SAVE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(demo, "extract_features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gallery_index(model, gallery, batch_size=1, kind="flat")
    assert [path.name.endswith(".partial.npz") for path in (run / "gallery_cache").iterdir()] == [True]
    calls.clear()
    # finished under another index kind: the features do not depend on it, so nothing is redone
    resumed, cached = gallery_index(model, gallery, batch_size=1, kind="hnsw")
    assert not cached and sum(calls) == len(gallery) - 2 * 8  # the two chunks done were kept
    np.testing.assert_allclose(resumed.features, reference, atol=1e-6)
    assert not list((run / "gallery_cache").glob("*.partial.npz"))
