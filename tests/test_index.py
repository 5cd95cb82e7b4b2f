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
