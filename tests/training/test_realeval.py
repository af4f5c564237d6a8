"""training/evaluation/realeval.py on synthetic clustered vectors: artist-disjoint folds, out-of-fold whitening, pair
AUC,
artist-bootstrap intervals, leave-one-out verification trials and the nested operating points."""

from __future__ import annotations

import numpy as np
import pytest

import contract.operating
import service.serving.strictness
from contract.card import Aggregation
from contract.operating import Unreachable, equal_error_point, rate_upper
from service.errors import ServiceError
from service.serving.strictness import Strictness, resolve
from training.evaluation import realeval
from training.evaluation.realeval import (
    OPERATING_POINTS,
    artist_folds,
    auc_eer,
    bootstrap_ci,
    nested_operating_points,
    oof_scores,
    verify_trials,
)

D = 16
N_CROPS = 4


def clustered(
    n_artists: int = 12, noise: float = 0.5, seed: int = 0, picture_noise: float = 0.3
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(crops per picture [N_CROPS, D], picture embeddings = crop means, artist labels); each artist has 2-4
    pictures, each crop its artist's centre plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_artists, D))
    crops, labels = [], []
    for a in range(n_artists):
        for _ in range(int(rng.integers(2, 5))):
            picture = centres[a] + rng.normal(0, picture_noise, D)
            crops.append(picture + rng.normal(0, noise, (N_CROPS, D)))
            labels.append(a)
    emb = np.stack([c.mean(axis=0) for c in crops])
    return crops, emb, np.array(labels)


def test_artist_folds_keep_each_artist_in_one_fold_and_are_seeded():
    _, _, labels = clustered(12)
    fold = artist_folds(labels, 3, seed=5)
    assert fold.shape == labels.shape
    for a in np.unique(labels):
        assert len(np.unique(fold[labels == a])) == 1
    # artists (not images) are dealt round-robin: 4 artists per fold
    assert sorted(len(np.unique(labels[fold == f])) for f in range(3)) == [4, 4, 4]
    np.testing.assert_array_equal(fold, artist_folds(labels, 3, seed=5))
    assert any(not np.array_equal(fold, artist_folds(labels, 3, seed=s)) for s in range(6, 12))


def test_oof_pairs_stay_inside_a_fold_and_the_whitening_never_saw_it(monkeypatch):
    crops, emb, labels = clustered(12)
    calls: list[np.ndarray] = []
    original = realeval.fit_on

    def recording(c, idx, dim, power):
        assert c is crops
        calls.append(np.array(idx))
        return original(c, idx, dim, power)

    monkeypatch.setattr(realeval, "fit_on", recording)
    pairs, assignments = oof_scores(crops, emb, labels, folds=2, repeats=3, seed=0, dim=8)
    assert len(assignments) == 3 and len(calls) == 3 * 2
    for r, fold in enumerate(assignments):
        np.testing.assert_array_equal(fold, artist_folds(labels, 2, seed=r))
        p = pairs.select(pairs.repeat == r)
        assert np.all(fold[p.ia] == fold[p.ib])  # only pairs of one fold
        assert np.all(p.ia < p.ib)
        np.testing.assert_array_equal(p.same, labels[p.ia] == labels[p.ib])
        sizes = np.bincount(fold)
        assert len(p.ia) == sum(n * (n - 1) // 2 for n in sizes)  # every within-fold pair, once
        for f in range(2):
            train = calls[2 * r + f]
            test = np.where(fold == f)[0]
            assert not set(train.tolist()) & set(test.tolist())  # never fitted on the fold it scores
            np.testing.assert_array_equal(np.sort(train), np.where(fold != f)[0])
    assert np.all(np.abs(pairs.score) <= 1 + 1e-9)  # cosines

    calls.clear()
    raw, _ = oof_scores(crops, emb, labels, folds=2, repeats=2, whiten=False)
    assert calls == []  # no whitening at all
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(raw.score, np.sum(e[raw.ia] * e[raw.ib], axis=1), atol=1e-9)


def test_pair_auc_is_high_on_clustered_data_and_chance_on_random_labels():
    crops, emb, labels = clustered(12)
    pairs, _ = oof_scores(crops, emb, labels, folds=2, repeats=4, dim=8)
    auc, eer, _ = auc_eer(pairs.same, pairs.score)
    assert auc > 0.9 and eer < 0.2

    rng = np.random.default_rng(1)
    crops = [rng.normal(size=(N_CROPS, D)) for _ in range(120)]
    emb = np.stack([c.mean(axis=0) for c in crops])
    labels = rng.integers(0, 30, 120)
    pairs, _ = oof_scores(crops, emb, labels, folds=2, repeats=4, dim=8)
    auc, eer, _ = auc_eer(pairs.same, pairs.score)
    assert abs(auc - 0.5) < 0.1
    assert abs(eer - 0.5) < 0.1


def _auc(p: realeval.Pairs, w: np.ndarray) -> float:
    return auc_eer(p.same, p.score, w)[0]


def test_bootstrap_interval_holds_the_estimate_and_widens_with_fewer_artists():
    widths = {}
    for n_artists in (8, 40):
        crops, emb, labels = clustered(n_artists, noise=2.0, picture_noise=1.0, seed=3)
        pairs, _ = oof_scores(crops, emb, labels, folds=2, repeats=2, dim=8)
        point = _auc(pairs, np.ones(len(pairs.same)))
        lo, hi = bootstrap_ci(pairs, labels, _auc, n=200, seed=0)
        assert lo <= point <= hi
        assert 0.5 < point < 1.0  # not a degenerate interval
        widths[n_artists] = hi - lo
        assert (lo, hi) == bootstrap_ci(pairs, labels, _auc, n=200, seed=0)  # seeded
    assert widths[8] > widths[40] > 0


def test_verify_trials_count_genuine_and_impostor_trials_per_repeat():
    crops, emb, labels = clustered(12)
    # one artist with a single work: never a query, still an impostor portfolio for the others
    keep = np.r_[np.where(labels != 0)[0], np.where(labels == 0)[0][:1]]
    crops, emb, labels = [crops[i] for i in keep], emb[keep], labels[keep]
    repeats = 3
    pairs, assignments = oof_scores(crops, emb, labels, folds=2, repeats=repeats, dim=8)
    s, genuine, query = verify_trials(pairs, labels, Aggregation(top_m=2))
    assert len(s) == len(genuine) == len(query)
    want_genuine = want_impostor = 0
    for fold in assignments:
        for i in range(len(labels)):
            same_fold = fold == fold[i]
            if np.sum(same_fold & (labels == labels[i])) >= 2:
                want_genuine += 1
                want_impostor += len(np.unique(labels[same_fold])) - 1
    assert int(genuine.sum()) == want_genuine == repeats * int(np.sum(np.bincount(labels)[labels] >= 2))
    assert int((~genuine).sum()) == want_impostor
    assert 0 not in set(query.tolist())
    # genuine portfolios of clustered artists score higher than impostor ones
    assert s[genuine].mean() > s[~genuine].mean()
    assert np.all(np.abs(s) <= 1 + 1e-9)


def test_nested_operating_points_one_entry_per_level_and_rule():
    crops, emb, labels = clustered(16)
    out = nested_operating_points(crops, emb, labels, outer_repeats=1, inner_repeats=1, dim=8)
    rules = {f"{k}<={v:g}" if v is not None else "default (EER point)" for k, v in OPERATING_POINTS}
    assert len(out) == 2 * len(OPERATING_POINTS)
    assert {(e["level"], e["rule"]) for e in out} == {(lvl, r) for lvl in ("pair", "verify") for r in rules}
    for e in out:
        assert e["halves"] == 2
        for key in ("claimed_fpr", "observed_fpr", "claimed_fnr", "observed_fnr"):
            assert 0.0 <= e[key] <= 1.0, (e, key)
        lo, hi = e["observed_fpr_range"]
        assert 0.0 <= lo <= e["observed_fpr"] <= hi <= 1.0
        lo, hi = e["observed_fnr_range"]
        assert 0.0 <= lo <= e["observed_fnr"] <= hi <= 1.0
        # every claim with its bound; a point no threshold met (the service's 422) counted, not hidden
        assert e["claimed_fpr"] <= e["claimed_fpr_upper"] <= 1.0 and 0 <= e["unreachable_halves"] <= e["halves"]
    # a stricter FPR cap claims no more false positives than a looser one
    pair = {e["rule"]: e for e in out if e["level"] == "pair"}
    assert pair["max_fpr<=0.01"]["claimed_fpr"] <= pair["max_fpr<=0.1"]["claimed_fpr"] <= 0.1


@pytest.mark.parametrize("folds", [2, 3])
def test_each_repeat_scores_every_image(folds):
    crops, emb, labels = clustered(12)
    pairs, _ = oof_scores(crops, emb, labels, folds=folds, repeats=2, dim=8)
    for r in range(2):
        p = pairs.select(pairs.repeat == r)
        assert set(np.r_[p.ia, p.ib].tolist()) == set(range(len(labels)))


def test_the_csls_variant_keeps_each_pair_tagged_with_its_repeat():
    crops, emb, labels = clustered(12)
    plain, _ = oof_scores(crops, emb, labels, folds=2, repeats=3, dim=8)
    csls, _ = oof_scores(crops, emb, labels, folds=2, repeats=3, dim=8, csls_k=3)
    np.testing.assert_array_equal(csls.repeat, plain.repeat)
    np.testing.assert_array_equal(csls.ia, plain.ia)
    np.testing.assert_array_equal(csls.same, plain.same)
    assert not np.allclose(csls.score, plain.score)
    assert auc_eer(csls.same, csls.score)[0] > 0.9


def test_the_adapted_variant_fits_the_whitening_on_the_scored_fold(monkeypatch):
    crops, emb, labels = clustered(12)
    calls: list[np.ndarray] = []
    original = realeval.fit_on

    def recording(c, idx, dim, power):
        calls.append(np.array(idx))
        return original(c, idx, dim, power)

    monkeypatch.setattr(realeval, "fit_on", recording)
    _, assignments = oof_scores(crops, emb, labels, folds=2, repeats=2, dim=8, fit_on_scored=True)
    for r, fold in enumerate(assignments):
        for f in range(2):
            np.testing.assert_array_equal(np.sort(calls[2 * r + f]), np.where(fold == f)[0])


def test_training_and_the_service_choose_operating_points_with_one_function() -> None:
    assert realeval.choose_point is contract.operating.operating_point
    assert service.serving.strictness.operating_point is contract.operating.operating_point


@pytest.mark.parametrize("seed", range(3))
def test_training_and_the_service_pick_the_same_row_for_the_same_table(seed: int) -> None:
    crops, emb, labels = clustered(14, seed=seed)
    pairs, _ = oof_scores(crops, emb, labels, folds=2, repeats=3, seed=seed, dim=8)
    table = realeval.counted_table(pairs.same, pairs.score, repeats=3)
    # counted per repeat: every repeat scores the same same-artist pairs again
    assert table.genuine == int(pairs.same.sum()) // 3 and table.impostor == int((~pairs.same).sum()) // 3
    for f in (0.01, 0.05, 0.1, 0.3, 0.5):
        try:
            trained = realeval.operating_point(table, "max_fpr", f)
        except Unreachable:
            with pytest.raises(ServiceError) as e:
                resolve(table, Strictness(max_fpr=f), (0.5, "unused"))
            assert e.value.code == "operating_point_unreachable"
            continue
        served = resolve(table, Strictness(max_fpr=f), (0.5, "unused"))
        assert served == trained
        assert served.fpr_upper == rate_upper(served.fpr, table.impostor) and served.fpr_upper <= f
    default = realeval.operating_point(table, "default", None)
    served = resolve(table, Strictness(), equal_error_point(table.rows, "the calibration table"))
    assert served == default
