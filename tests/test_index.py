import numpy as np
import pytest

from reidgraft.index import GalleryIndex


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


def test_fingerprints_follow_content_not_location(tmp_path):
    import torch

    from reidgraft.index import files_fingerprint, state_fingerprint

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.jpg").write_bytes(b"same bytes")
    here = files_fingerprint([tmp_path / "a" / "x.jpg"], tmp_path / "a")
    assert here == files_fingerprint([tmp_path / "b" / "x.jpg"], tmp_path / "b")
    (tmp_path / "b" / "x.jpg").write_bytes(b"other bytes")
    assert here != files_fingerprint([tmp_path / "b" / "x.jpg"], tmp_path / "b")

    state = {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.bfloat16)}
    base = state_fingerprint(state, extra=("resnet50", 256))
    assert base == state_fingerprint(dict(reversed(state.items())), extra=("resnet50", 256))
    assert base != state_fingerprint(state, extra=("resnet50", 128))
    changed = {**state, "w": torch.tensor([1.0, 1.0, 1.0 + 2**-20])}
    assert base != state_fingerprint(changed, extra=("resnet50", 256))
