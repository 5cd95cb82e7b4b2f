import numpy as np
import pytest

from reidgraft.index import GalleryIndex, faiss_gpus


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_search_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    gallery, queries = rng.standard_normal((200, 16), np.float32), rng.standard_normal((5, 16), np.float32)
    distances, indices = GalleryIndex(gallery, metric).search(queries, 7)
    if metric == "cosine":
        normed = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
        brute = 1 - normed(queries) @ normed(gallery).T
    else:
        brute = ((queries[:, None, :] - gallery[None]) ** 2).sum(-1)
    assert np.array_equal(indices, np.argsort(brute, axis=1)[:, :7])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :7], rtol=1e-4, atol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown metric"):
        GalleryIndex(np.zeros((3, 2)), "manhattan")
    with pytest.raises(ValueError, match="dimension 3, the gallery 2"):
        GalleryIndex(np.zeros((3, 2))).search(np.zeros((1, 3)), 2)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cache_round_trip_and_refusals(tmp_path, metric):
    from reidgraft.index import load_gallery_cache, save_gallery_cache

    rng = np.random.default_rng(1)
    index = GalleryIndex(rng.standard_normal((50, 8), np.float32), metric)
    path = tmp_path / "cache.npz"
    save_gallery_cache(path, index, [f"img{i}.jpg" for i in range(50)], key="abc")
    loaded, names = load_gallery_cache(path, "abc")
    assert loaded.metric == metric and names[7] == "img7.jpg"
    assert np.array_equal(loaded.features, index.features)
    queries = rng.standard_normal((3, 8), np.float32)
    for got, expected in zip(loaded.search(queries, 5), index.search(queries, 5)):
        assert np.array_equal(got, expected)
    assert load_gallery_cache(path, "another key") is None
    assert load_gallery_cache(tmp_path / "absent.npz", "abc") is None
    path.write_bytes(path.read_bytes()[:-50])
    assert load_gallery_cache(path, "abc") is None
    with pytest.raises(ValueError, match="3 image names for an index of 50"):
        save_gallery_cache(path, index, ["a", "b", "c"], key="abc")
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_gpu_index_without_faiss_gpu_is_refused_and_the_default_searches_here():
    features = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    index = GalleryIndex(features)
    assert index.on_gpu == bool(faiss_gpus())
    if not faiss_gpus():
        with pytest.raises(ValueError, match="a GPU gallery index needs faiss-gpu and a visible GPU"):
            GalleryIndex(features, gpu=True)


@pytest.mark.cuda
def test_the_gpu_index_finds_what_the_cpu_index_finds():
    if not faiss_gpus():  # the `gpu` extra: a CUDA machine with the default install has faiss-cpu
        pytest.skip("needs faiss-gpu (scripts/setup.sh with REIDGRAFT_EXTRAS=gpu)")
    features = np.random.default_rng(1).normal(size=(500, 32)).astype(np.float32)
    queries = features[:20] + 0.01
    on_gpu, on_cpu = GalleryIndex(features, gpu=True), GalleryIndex(features, gpu=False)
    assert on_gpu.on_gpu and not on_cpu.on_gpu
    gpu_distances, gpu_indices = on_gpu.search(queries, 10)
    cpu_distances, cpu_indices = on_cpu.search(queries, 10)
    assert (gpu_indices == cpu_indices).mean() > 0.99
    np.testing.assert_allclose(gpu_distances, cpu_distances, rtol=1e-4, atol=1e-4)


def clustered(count: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features around 50 centres (people seen many times) and queries near some of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim)).astype(np.float32)
    gallery = centres[rng.integers(0, 50, count)] + 0.3 * rng.normal(size=(count, dim)).astype(np.float32)
    queries = gallery[:40] + 0.05 * rng.normal(size=(40, dim)).astype(np.float32)
    return gallery, queries


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approximate_kinds_find_what_flat_finds(kind, metric):
    gallery, queries = clustered(20_000, 32, seed=1)
    exact = GalleryIndex(gallery, metric)
    approximate = GalleryIndex(gallery, metric, kind=kind)
    assert approximate.kind == kind and approximate.note == ""
    _, truth = exact.search(queries, 10)
    distances, found = approximate.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.99
    assert np.all(np.diff(distances, axis=1) >= -1e-6)  # nearest first
    np.testing.assert_array_equal(approximate.features, exact.features)  # gallery order kept
    # stored and read back: same kind, same parameters, same answers
    back = GalleryIndex.from_bytes(approximate.to_bytes(), metric, approximate.params)
    assert back.params == approximate.params
    np.testing.assert_array_equal(back.search(queries, 10)[1], found)


def test_auto_and_the_ivf_fallback():
    gallery, _ = clustered(3_000, 16, seed=2)
    assert GalleryIndex(gallery, kind="auto").kind == "flat"  # below 100,000 images
    small = GalleryIndex(gallery[:500], kind="ivf")
    assert small.kind == "flat"
    assert small.note.startswith("an ivf index of 64 cells needs at least 2496 images, the gallery has 500")
    assert GalleryIndex(gallery, kind="ivf").kind == "flat"  # 256 cells need 9,984 images
    assert GalleryIndex(clustered(30_000, 16, seed=3)[0], kind="ivf").kind == "ivf"  # 512 cells
    with pytest.raises(ValueError, match="unknown index kind 'annoy'; choose one of: flat, ivf, hnsw, auto"):
        GalleryIndex(gallery, kind="annoy")
    with pytest.raises(ValueError, match="the stored index is hnsw, not ivf"):
        GalleryIndex.from_bytes(GalleryIndex(gallery, kind="hnsw").to_bytes(), "euclidean", {"kind": "ivf"})
