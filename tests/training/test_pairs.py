"""training/data/pairs.py: balanced, fresh, self-pair-free sampling that never favours prolific artists."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.pairs import PairDataset, PairSampler, fixed_pairs

# artist 0 is prolific (100 images), 1..9 have 3 each, 10 and 11 a single image
LABELS = np.array([0] * 100 + [a for a in range(1, 10) for _ in range(3)] + [10, 11])
rng = np.random.default_rng(1)
LABELS = LABELS[rng.permutation(len(LABELS))]  # sampler must not rely on grouped order


def test_epoch_is_balanced_and_labels_are_true():
    ia, ib, y = PairSampler(LABELS, seed=0).epoch(1001)
    assert len(ia) == len(ib) == len(y) == 1001
    assert y.sum() == 500
    np.testing.assert_array_equal(LABELS[ia] == LABELS[ib], y == 1)


def test_never_pairs_an_image_with_itself():
    ia, ib, _ = PairSampler(LABELS, seed=3).epoch(20_000)
    assert not np.any(ia == ib)


def test_single_image_artists_only_in_negatives():
    ia, ib, y = PairSampler(LABELS, seed=0).epoch(20_000)
    singles = np.flatnonzero(np.isin(LABELS, [10, 11]))
    in_pos = np.isin(ia[y == 1], singles) | np.isin(ib[y == 1], singles)
    in_neg = np.isin(ia[y == 0], singles) | np.isin(ib[y == 0], singles)
    assert not in_pos.any()
    assert in_neg.any()


def test_positives_spread_over_artists_not_images():
    ia, _, y = PairSampler(LABELS, seed=0).epoch(20_000)
    artists = LABELS[ia[y == 1]]
    share = np.mean(artists == 0)
    # 10 artists can form positives: ~10% each, although artist 0 owns 100/129 images
    assert 0.07 < share < 0.13
    assert len(np.unique(artists)) == 10


def test_fresh_pairs_each_epoch_but_reproducible_by_seed():
    s = PairSampler(LABELS, seed=5)
    e1, e2 = s.epoch(200), s.epoch(200)
    assert not np.array_equal(e1[0], e2[0])
    again = PairSampler(LABELS, seed=5).epoch(200)
    np.testing.assert_array_equal(e1[0], again[0])
    np.testing.assert_array_equal(e1[2], again[2])


def test_fixed_pairs_deterministic_and_balanced():
    a = fixed_pairs(LABELS, 300, seed=2)
    b = fixed_pairs(LABELS, 300, seed=2)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, z)
    assert a[2].sum() == 150
    assert not np.array_equal(a[0], fixed_pairs(LABELS, 300, seed=3)[0])


def test_impossible_label_sets_are_refused():
    with pytest.raises(ValueError, match="two artists"):
        PairSampler([1, 1, 1])
    with pytest.raises(ValueError, match="two images"):
        PairSampler([1, 2, 3])


def test_pair_dataset_gathers_rows_and_resamples_per_epoch():
    emb = np.arange(len(LABELS), dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    ds = PairDataset(emb, PairSampler(LABELS, seed=0), pairs_per_epoch=100, batch_size=32)
    assert len(ds) == 4
    x, y = ds[3]
    assert x["embedding_a"].shape == (4, 4) and y.shape == (4,)
    x, y = ds[0]
    ia, ib = x["embedding_a"][:, 0].astype(int), x["embedding_b"][:, 0].astype(int)
    np.testing.assert_array_equal(LABELS[ia] == LABELS[ib], y == 1)
    before = ds.ia.copy()
    ds.on_epoch_end()
    assert not np.array_equal(before, ds.ia)
