"""training/evaluation/robustness.py on synthetic vectors with a known camera effect: every condition shifts a
painting's
crops along its own direction (plus noise), stronger for the harsher conditions. Checked: the verify trials are the
service's aggregation, the quality model reads the harm from the measures, bands fall with quality and stop at a
floor, decisions take their band's table through the service's rule, and the judge reports every condition within,
cross and verify, on artists and families it did not fit."""

from __future__ import annotations

import numpy as np
import pytest

from contract import quality
from contract.aggregation import aggregate
from contract.card import Aggregation
from contract.operating import operating_point
from training.data import conditions as cond
from training.evaluation import robustness
from training.evaluation.robustness import Copies, Recipe, Trials
from training.heads import cosine

D = 24
CROPS = 3
# condition → severity (how far it moves a painting, and how much its measures say so)
SEVERITY = {"jpeg_q90": 0.2, "jpeg_q30": 1.2, "blur_0.8": 0.4, "blur_1.5": 1.5, "noise_12": 1.0, "messenger": 1.3}


def corpus(seed: int = 0, n_artists: int = 16) -> tuple[Copies, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (n_artists, D))
    labels = np.repeat(np.arange(n_artists), rng.integers(2, 5, n_artists))
    n = len(labels)
    paintings = centres[labels] + rng.normal(0, 0.9, (n, D))
    crops = [p + rng.normal(0, 0.5, (CROPS, D)) for p in paintings]
    # cameras move paintings within one small subspace (every degradation loses the same fine detail, in its own
    # mixture): a fit on some families learns what a held-out family does
    camera = rng.normal(0, 1, (2, D))
    direction = {c: rng.normal(0, 1, 2) @ camera for c in SEVERITY}
    under = {
        c: [x + sev * (direction[c] + rng.normal(0, 0.3, D)) + rng.normal(0, 0.2, x.shape) for x in crops]
        for c, sev in SEVERITY.items()
    }
    copies = Copies.of(crops, under)

    def measures(sev: float) -> np.ndarray:
        # sharpness falls and noise rises with severity; the rest is uninformative
        f = np.zeros((n, len(robustness.QUALITY_FEATURES)))
        f[:, robustness.QUALITY_FEATURES.index("sharpness")] = 0.8 - 0.3 * sev + rng.normal(0, 0.02, n)
        f[:, robustness.QUALITY_FEATURES.index("noise")] = 1.0 + sev + rng.normal(0, 0.05, n)
        f[:, robustness.QUALITY_FEATURES.index("jpeg_quality")] = 90 + rng.normal(0, 1, n)
        return f

    feats = {"published": measures(0.0), **{c: measures(s) for c, s in SEVERITY.items()}}
    return copies, feats, labels


@pytest.fixture(scope="module")
def data() -> tuple[Copies, dict[str, np.ndarray], np.ndarray]:
    return corpus()


def test_portfolio_trials_are_the_services_aggregation(data) -> None:
    copies, _, labels = data
    head = cosine.CosineHead(cosine.fit_whitening(np.concatenate(copies.crops), dim=8), 4.0, -1.0)
    n = len(labels)
    q = {"published": np.ones(n), "jpeg_q30": np.full(n, 0.7)}
    agg = Aggregation(top_m=2)
    test = np.arange(0, n, 2)
    t = robustness.portfolio_trials(head, copies, q, labels, test, "jpeg_q30", agg)
    pub, query = head.project(copies.emb[test]), head.project(copies.under["jpeg_q30"][test])
    expected = []
    for i in range(len(test)):
        for a in np.unique(labels[test]):
            refs = [j for j in range(len(test)) if labels[test][j] == a and j != i]
            if refs:
                s = aggregate(head.compare(np.repeat(query[i : i + 1], len(refs), 0), pub[refs]), agg)
                expected.append((int(test[i]), bool(a == labels[test][i]), round(s, 6)))
    got = sorted(zip(t.ia.tolist(), t.same.tolist(), np.round(t.score, 6).tolist(), strict=True))
    assert got == sorted(expected)
    assert np.all(t.quality == 0.7)


def test_trials_count_distinct_pairs_per_repeat() -> None:
    t = Trials(
        ia=np.array([0, 1, 0, 0, 2]),
        ib=np.array([1, 0, 1, 2, 3]),
        same=np.array([True, True, True, False, False]),
        score=np.zeros(5),
        quality=np.ones(5),
        repeat=np.array([0, 0, 1, 0, 1]),
    )
    # pair (0, 1) twice in repeat 0 (both orientations) and once in repeat 1: 2 per 2 repeats; impostors 2 / 2
    assert t.distinct() == (1, 1)


def test_fitted_model_reads_quality_and_bands_fall_with_it(data) -> None:
    copies, feats, labels = data
    names = list(SEVERITY)
    m = robustness.fit_model(copies, feats, labels, np.arange(len(labels)), names, Recipe(dim=8), repeats=2)
    assert m.quality is not None and m.bands
    q = robustness.qualities(m.quality, feats)
    # the harsh conditions read as worse than the mild ones and the published pictures as the best
    assert q["published"].mean() > q["jpeg_q90"].mean() > q["jpeg_q30"].mean()
    assert q["blur_0.8"].mean() > q["blur_1.5"].mean()
    # the contract's per-picture score is the vectorised one
    pic = quality.Measures(width=10, height=10, bits_per_pixel=1, jpeg_quality=90, sharpness=0.5, noise=1.0)
    v = pic.vector(robustness.QUALITY_FEATURES)
    assert quality.score(pic, m.quality) == pytest.approx(robustness.qualities(m.quality, {"x": v[None]})["x"][0])
    mins = [b.min_quality for b in m.bands]
    assert mins == sorted(mins, reverse=True) and m.quality.floor == mins[-1]
    for b in m.bands:
        assert b.genuine_pairs and b.impostor_pairs and b.portfolio and b.genuine_trials
        assert all(r.fpr_upper is not None and r.fpr_upper >= r.fpr for r in b.pair)
    # the published tables are counted per repeat, not per trial
    assert m.pair.genuine <= len(m.published.same) / 2


def test_decisions_take_their_bands_table_and_refuse_below_the_floor(data) -> None:
    copies, feats, labels = data
    idx = np.arange(len(labels))
    m = robustness.fit_model(copies, feats, labels, idx, list(SEVERITY), Recipe(dim=8), repeats=2)
    top, low = m.bands[0], m.bands[-1]
    t = Trials(
        ia=np.zeros(3, int), ib=np.ones(3, int), same=np.zeros(3, bool), score=np.full(3, 0.5),
        quality=np.array([1.0, low.min_quality, low.min_quality - 1e-3]), repeat=np.zeros(3, int),
    )  # fmt: skip
    j = robustness.decide(m, t)
    assert j.refused.tolist() == [False, False, True]
    for k, band in ((0, top), (1, low)):
        table, default = quality.band_table(band, "pair")
        point = operating_point(table, max_fpr=0.05)
        assert j.claimed_fpr["max_fpr<=0.05"][k] == point.fpr
        assert j.accept["max_fpr<=0.05"][k] == (point.threshold <= 0.5)
        assert j.claimed_fpr["default"][k] == operating_point(table, default=default).fpr


def test_judge_reports_every_condition_on_unseen_artists_and_families(data) -> None:
    copies, feats, labels = data
    conditions = cond.get(list(SEVERITY))
    res = robustness.judge(copies, feats, labels, conditions, Recipe(dim=8), outer_repeats=1, n_boot=20)
    expected = {"published/published", "published/verify"} | {
        f"{c}/{k}" for c in SEVERITY for k in ("within", "cross", "verify")
    }
    edc = res.pop("error_versus_discard")
    assert set(res) == expected
    assert edc["fraction"][0] == 0.0 and len(edc["fnr"]) == len(edc["fraction"])
    # setting the lowest-quality pairs aside sheds errors (the synthetic measures do say how harsh a condition is)
    assert edc["fnr"][-1] + edc["fpr"][-1] < edc["fnr"][0] + edc["fpr"][0]
    for key, row in res.items():
        assert 0.5 < row["auc"] <= 1.0, key
        lo, hi = row["auc_ci95"]
        assert lo <= hi
        for rule in ("max_fpr<=0.05", "max_fpr<=0.01", "default"):
            p = row["points"][rule]
            assert set(p) >= {"observed_fpr", "claimed_fpr", "observed_fnr", "claimed_fnr", "observed_fpr_ci95"}
    plain = robustness.judge(
        copies, feats, labels, conditions, Recipe(dim=8, robust=False), outer_repeats=1, n_boot=0, banded=False
    )
    # the camera's shared shift makes different artists' copies alike under plain whitening; not when ignored
    worst = lambda r: max(r[f"{c}/within"]["points"]["max_fpr<=0.05"]["observed_fpr"] for c in SEVERITY)  # noqa: E731
    assert worst(res) < worst(plain)
