"""service/storage/index.py: the faiss reference index — rows, per-artist slices, exact cosine search, removal."""

from __future__ import annotations

import numpy as np
import pytest

from service.storage.index import ReferenceIndex


def _vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_search_is_exact_cosine_best_first() -> None:
    index = ReferenceIndex(8, use_gpu=False)
    v = _vectors(6, 8)
    index.add([f"w{i}" for i in range(6)], ["a", "a", "b", "b", "c", "c"], v)
    index.check()
    hits = index.search(v[3] * 5.0, 100)  # scale does not matter: the index holds normalised copies
    assert len(hits) == 6 and hits[0].work_id == "w3" and hits[0].artist_id == "b"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    expected = unit @ unit[3]
    assert [h.similarity for h in hits] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert index.search(v[0], 0) == [] and ReferenceIndex(8, use_gpu=False).search(v[0], 5) == []


def test_rows_follow_adds_and_removes() -> None:
    index = ReferenceIndex(4, use_gpu=False)
    v = _vectors(5, 4, seed=1)
    index.add(["w0", "w1", "w2"], ["a", "b", "a"], v[:3])
    assert index.rows_of("a").tolist() == [0, 2] and index.rows_of("nobody").tolist() == []
    index.add(["w3", "w4"], ["b", "a"], v[3:])
    assert index.rows_of("a").tolist() == [0, 2, 4]
    index.remove({"w0", "w3"})
    index.check()
    assert index.work_ids == ["w1", "w2", "w4"] and index.artist_ids == ["b", "a", "a"] and len(index) == 3
    np.testing.assert_array_equal(index.vectors, v[[1, 2, 4]])  # the reference vectors as given, not normalised
    assert index.rows_of("a").tolist() == [1, 2]
    assert {h.work_id for h in index.search(v[0], 10)} == {"w1", "w2", "w4"}
    index.remove({"not-there"})
    assert len(index) == 3
