"""training/evaluation/evaluate.py: metrics, calibration tables, portfolio simulation, plots;
training/evaluation/report.py: the report."""

from __future__ import annotations

import numpy as np
import pytest

from contract.calibration import GRID, threshold_table
from contract.card import Calibration
from contract.operating import equal_error_row, rate_upper
from training.evaluation.evaluate import (
    at_threshold,
    calibrate,
    choose_head,
    evaluate_head,
    portfolio_trials,
    roc_summary,
)
from training.evaluation.report import write_report
from training.heads.trained import build_head


def test_roc_summary_perfect_and_crossing():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = roc_summary(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert perfect["auc"] == 1.0 and perfect["eer"] == 0.0
    assert 0.3 <= perfect["eer_threshold"] <= 0.7
    # one negative above one positive: 1 error each side out of 3 → EER 1/3
    mixed = roc_summary(y, np.array([0.1, 0.2, 0.75, 0.7, 0.8, 0.9]))
    assert mixed["eer"] == pytest.approx(1 / 3)
    assert mixed["auc"] == pytest.approx(8 / 9)


def test_threshold_table_counts():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.2, 0.6, 0.4, 0.9])
    rows = threshold_table(y, s)
    assert [r.threshold for r in rows] == list(GRID) == sorted(set(GRID))
    assert {0.0, 0.5, 0.95, 0.999, 0.9999, 1.0} <= set(GRID)
    r = rows[GRID.index(0.5)]  # threshold 0.5: accepts 0.6 (negative) and 0.9 (positive)
    assert (r.fpr, r.fnr, r.precision, r.recall) == (0.5, 0.5, 0.5, 0.5)
    assert rows[0].fpr == 1.0 and rows[0].fnr == 0.0
    assert rows[-1].fnr == 1.0 and rows[-1].precision == 1.0  # nothing accepted, nothing falsely accepted
    fprs = [r.fpr for r in rows]
    assert fprs == sorted(fprs, reverse=True)


def test_at_threshold_confusion_and_report():
    res = at_threshold(np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.4, 0.9]), 0.5)
    assert res["confusion"] == [[1, 1], [1, 1]]
    assert res["report"]["same"]["precision"] == 0.5
    assert "different" in res["report_text"]


def test_portfolio_trials_follow_the_protocol():
    labels = np.repeat(np.arange(6), [2, 4, 4, 4, 6, 1])
    q, refs, y = portfolio_trials(labels, k=3, n_trials=200, seed=0)
    assert refs.shape == (200, 3) and y.sum() == 100
    for qi, r, yi in zip(q, refs, y, strict=True):
        claimed = labels[r]
        assert len(set(claimed)) == 1 and len(set(r)) == 3
        assert labels[r[0]] in (1, 2, 3, 4)  # only artists with k+1 = 4 images can be claimed
        assert qi not in r
        assert (labels[qi] == claimed[0]) == bool(yi)
    assert portfolio_trials(labels, k=5, n_trials=10) is None  # only one artist has 6 images


def _clustered(n_artists: int, per: int, seed: int, offset: int):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_artists), per) + offset
    centres = rng.normal(size=(n_artists, 8))
    return (centres[labels - offset] * 2 + rng.normal(size=(len(labels), 8)) * 0.3).astype(np.float32), labels


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    # an untrained symmetric head on well separated clusters already ranks same-artist pairs higher
    head = build_head("symmetric", 8, hidden=32, projection_dim=16, comparator_hidden=8, dropout=0.0)
    splits = {"val": _clustered(8, 12, 1, 100), "test": _clustered(8, 12, 2, 200), "test_seen": _clustered(5, 3, 3, 0)}
    plot_dir = tmp_path_factory.mktemp("plots")
    ev = evaluate_head(head, splits, plot_dir=plot_dir, n_pairs=400, n_trials=100)
    return ev, plot_dir


def test_evaluate_head_structure(evaluation):
    ev, plot_dir = evaluation
    assert set(ev.metrics) == {"val", "unseen", "seen"}
    assert isinstance(ev.calibration, Calibration)
    assert [p.k for p in ev.calibration.portfolio] == [1, 3, 5, 10]  # 12 images per artist: no k=20
    assert set(ev.metrics["unseen"]["portfolio"]) == {"1", "3", "5", "10"}
    assert set(ev.metrics["seen"]["portfolio"]) == {"1"}  # 3 images per artist: k=3 needs 4
    assert ev.metrics["unseen"]["pair"]["at_threshold"]["threshold"] == ev.calibration.recommended_threshold
    assert ev.metrics["unseen"]["pair"]["n"] == 400
    for name in ev.plots:
        assert (plot_dir / name).stat().st_size > 1000
    assert {p.rsplit("_", 1)[1] for p in ev.plots} == {"roc.png", "hist.png", "confusion.png"}
    assert "report_text" not in str(ev.card_metrics())


def test_calibration_threshold_is_val_eer():
    y = np.array([0, 0, 0, 1, 1, 1.0])
    from training.evaluation.evaluate import SplitScores

    cal = calibrate(SplitScores("val", y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])))
    assert 0.3 <= cal.recommended_threshold <= 0.7
    assert "val" in cal.recommended_rule
    # the service's default point: the equal-error row of the table, as contract.operating defines it
    assert cal.recommended_threshold == equal_error_row(cal.pair).threshold
    assert (cal.genuine_pairs, cal.impostor_pairs) == (3, 3)


def test_calibration_counts_distinct_pairs_and_trials(evaluation):
    """fixed_pairs and portfolio_trials sample with replacement: a small split repeats pairs, which show no more
    than once. The card records the distinct ones, and the rows' bounds are for those counts."""
    ev, _ = evaluation
    cal = ev.calibration
    assert cal.genuine_pairs is not None and cal.impostor_pairs is not None
    assert 0 < cal.genuine_pairs <= 200 and 0 < cal.impostor_pairs <= 200  # n_pairs=400, balanced
    assert cal.pair[0].fpr_upper == rate_upper(cal.pair[0].fpr, cal.impostor_pairs)
    for p in cal.portfolio:
        assert p.genuine_trials is not None and 0 < p.genuine_trials <= 50
        assert p.impostor_trials is not None and 0 < p.impostor_trials <= 50


def test_choose_head_and_report(evaluation, tmp_path):
    ev, _ = evaluation
    from dataclasses import replace

    better = replace(ev, kind="seed", params=ev.params * 10)
    better.metrics = {**ev.metrics, "val": {**ev.metrics["val"], "pair": {**ev.metrics["val"]["pair"], "auc": 0.99}}}
    chosen, why = choose_head([ev, better])
    assert chosen is better and "0.990" in why
    chosen, why = choose_head([ev])
    assert chosen is ev
    path = write_report(
        tmp_path / "REPORT.md",
        [ev, better],
        better,
        "because",
        {"name": "tiny"},
        {"train": {"images": 10, "artists": 2}},
        "python -m training run ...",
        {"embed": 1.0, "train": 2.0},
    )
    text = path.read_text()
    for needle in (
        "`symmetric`",
        "`seed`",
        "Shipped head: `seed`",
        "unseen artists",
        "seen artists",
        "python -m training run",
        "| total | 3.0 |",
        "Portfolio, k = 10",
    ):
        assert needle in text, needle
