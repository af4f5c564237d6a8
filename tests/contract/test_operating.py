"""contract/operating.py: Clopper–Pearson bounds checked against their definition (binomial tails), and the
operating-point rule: `max_fpr` / `min_precision` chosen on the bound, unreachable points saying what n can show,
tables without counts answered with point estimates and unknown (None) bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from contract.calibration import GRID, SampleSize, threshold_table
from contract.card import CalibrationRow
from contract.operating import (
    CONFIDENCE,
    Table,
    Unreachable,
    equal_error_row,
    operating_point,
    precision_lower,
    rate_upper,
    rates_at,
)

ALPHA = 1 - CONFIDENCE


# ---- the bounds -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "n"), [(0, 56), (1, 56), (5, 56), (0, 14), (3, 14), (12, 6025), (0, 1), (40, 41)])
def test_rate_upper_is_the_clopper_pearson_bound(k: int, n: int) -> None:
    """The one-sided upper bound u of k/n is the rate at which seeing k or fewer has probability exactly 5 %."""
    u = rate_upper(k / n, n)
    assert u is not None and k / n < u < 1.0
    assert binom.cdf(k, n, u) == pytest.approx(ALPHA, abs=1e-9)


def test_rate_upper_ends_and_unknowns() -> None:
    assert rate_upper(0.0, 56) == pytest.approx(1 - ALPHA ** (1 / 56))  # nothing seen: 1 - 0.05^(1/n), about 3/n
    assert round(rate_upper(0.0, 56) or 0, 3) == 0.052
    assert rate_upper(1.0, 56) == 1.0
    assert rate_upper(0.3, None) is None  # count not recorded: unknown, never invented
    assert rate_upper(0.0, 0) == 1.0  # no pairs show nothing
    # more pairs, the same observed rate: a tighter bound
    assert (rate_upper(0.01, 100_000) or 1) < (rate_upper(0.01, 1000) or 1) < (rate_upper(0.01, 100) or 1)


@pytest.mark.parametrize(("tp", "fp"), [(14, 0), (10, 3), (57, 20), (1, 0), (200, 1)])
def test_precision_lower_is_the_clopper_pearson_bound(tp: int, fp: int) -> None:
    genuine, impostor = 20 * tp, 40 * max(fp, 1)
    lo = precision_lower(tp / genuine, fp / impostor, genuine, impostor)
    assert lo is not None and 0.0 < lo < tp / (tp + fp)
    # seeing tp or more "right" of tp + fp accepted has probability exactly 5 % at the lower bound
    assert binom.sf(tp - 1, tp + fp, lo) == pytest.approx(ALPHA, abs=1e-9)


def test_precision_lower_nothing_accepted_and_unknowns() -> None:
    assert precision_lower(0.0, 0.0, 14, 56) == 0.0  # nothing accepted shows nothing, whatever the convention says
    assert precision_lower(0.5, 0.1, None, 56) is None
    assert precision_lower(0.5, 0.1, 14, None) is None


# ---- the rule -------------------------------------------------------------------------------------------------
def scored(genuine: int, impostor: int, seed: int = 0, gap: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.ones(genuine, bool), np.zeros(impostor, bool)])
    s = np.clip(rng.normal(0.5 + gap * np.where(y, 1, -1), 0.15), 0, 1)
    return y, s


def counted(y: np.ndarray, s: np.ndarray, unit: str = "pairs") -> Table:
    return Table(threshold_table(y, s), int(y.sum()), int((~y).sum()), unit)


@pytest.mark.parametrize("max_fpr", [0.5, 0.2, 0.1, 0.05, 0.03])
def test_max_fpr_takes_the_smallest_threshold_whose_upper_bound_meets_it(max_fpr: float) -> None:
    y, s = scored(60, 300, gap=0.15)
    table = counted(y, s)
    op = operating_point(table, max_fpr=max_fpr)
    assert op.rule == f"max_fpr<={max_fpr:g}"
    assert op.fpr_upper is not None and op.fpr_upper <= max_fpr
    # checked from the definition, not from rate_upper: at the chosen threshold, seeing this few false positives
    # would have been at most 5 % likely if the true FPR were max_fpr (or more); one row lower, it would not
    fp = int(np.sum(s[~y] >= op.threshold))
    assert binom.cdf(fp, 300, max_fpr) <= ALPHA + 1e-12
    lower = [r for r in table.rows if r.threshold < op.threshold]
    if lower:
        fp_below = int(np.sum(s[~y] >= lower[-1].threshold))
        assert binom.cdf(fp_below, 300, max_fpr) > ALPHA
    # the point estimate alone would have taken a threshold at most as high: the bound is the stricter rule
    naive = next(r for r in table.rows if r.fpr <= max_fpr)
    assert naive.threshold <= op.threshold


def test_the_small_gallery_case_14_genuine_56_impostor() -> None:
    """The observed bug: 14 same-artist / 56 different-artist pairs answered max_fpr=0.001 with FPR 0.0."""
    y, s = scored(14, 56, gap=0.3)
    table = counted(y, s)
    with pytest.raises(Unreachable) as e:
        operating_point(table, max_fpr=0.001)
    message = str(e.value)
    assert "with 56 different-artist pairs" in message
    assert "lowest false-positive rate shown at 95 % confidence is 0.052" in message
    op = operating_point(table, max_fpr=0.1)
    cp = rate_upper(op.fpr, 56)
    assert op.fpr_upper is not None and cp is not None and op.fpr_upper >= cp and op.fpr_upper <= 0.1
    assert op.fpr_upper >= 1 - ALPHA ** (1 / 56)  # never below what 56 pairs can show, even where none was accepted
    assert op.fnr_upper == rate_upper(op.fnr, 14)


def test_min_precision_on_the_lower_bound() -> None:
    y, s = scored(60, 300, seed=3, gap=0.2)
    table = counted(y, s)
    op = operating_point(table, min_precision=0.8)
    row = next(r for r in table.rows if r.threshold == op.threshold)
    lo = table.precision_lower(row)
    assert lo is not None and lo >= 0.8 and row.precision >= lo
    below = [r for r in table.rows if r.threshold < op.threshold]
    assert all((table.precision_lower(r) or 0) < 0.8 for r in below)
    small = counted(*scored(14, 56, gap=0.3))
    with pytest.raises(Unreachable) as e:
        operating_point(small, min_precision=0.99)
    assert "with 14 same-artist and 56 different-artist pairs the highest precision shown" in str(e.value)


def test_threshold_and_default_report_interpolated_rates_with_their_bounds() -> None:
    y, s = scored(40, 200, seed=5, gap=0.1)
    table = counted(y, s)
    op = operating_point(table, threshold=0.4567)
    fpr, fnr = rates_at(table.rows, 0.4567)
    assert (op.threshold, op.fpr, op.fnr, op.rule) == (0.4567, fpr, fnr, "threshold=0.4567")
    assert op.fpr_upper == rate_upper(fpr, 200) and op.fnr_upper == rate_upper(fnr, 40)
    eer = equal_error_row(table.rows)
    d = operating_point(table)
    assert (d.threshold, d.fpr, d.fnr) == (eer.threshold, eer.fpr, eer.fnr)
    assert d.fpr_upper == rate_upper(eer.fpr, 200) and d.rule.startswith("equal error rate")
    given = operating_point(table, default=(0.5, "the card's recommendation"))
    assert given.threshold == 0.5 and given.rule == "the card's recommendation"


def test_a_table_without_counts_gives_point_estimates_and_unknown_bounds() -> None:
    """Older cards: no counts recorded. The rule is the point estimate's, as before; no bound is invented."""
    y, s = scored(14, 56, gap=0.3)
    table = Table(threshold_table(y, s))
    assert not table.counted and table.confidence is None
    op = operating_point(table, max_fpr=0.001)
    assert op.fpr == 0.0 and op.fpr_upper is None and op.fnr_upper is None
    assert op.threshold == next(r for r in table.rows if r.fpr <= 0.001).threshold
    assert operating_point(table, threshold=0.5).fpr_upper is None
    with pytest.raises(Unreachable):
        operating_point(Table([r for r in table.rows if r.fpr > 0]), max_fpr=0.0)


def test_at_most_one_strictness_and_no_empty_table() -> None:
    table = counted(*scored(10, 10))
    with pytest.raises(ValueError, match="at most one"):
        operating_point(table, threshold=0.5, max_fpr=0.1)
    with pytest.raises(ValueError, match="empty"):
        operating_point(Table([]))


def test_equal_error_row_lowest_threshold_on_ties() -> None:
    rows = [
        CalibrationRow(threshold=t, fpr=f, fnr=n, precision=0.5, recall=1 - n)
        for t, f, n in [(0.1, 0.9, 0.0), (0.3, 0.3, 0.3), (0.4, 0.3, 0.3), (0.8, 0.0, 0.9)]
    ]
    assert equal_error_row(rows).threshold == 0.3


def test_table_rows_carry_the_bounds_the_rule_computes() -> None:
    """threshold_table writes each row's bounds for the readers of a card; the rule recomputes them from the
    counts with the same function, so the two never disagree."""
    y, s = scored(30, 90, seed=7)
    counts = SampleSize(10, 30)  # e.g. the same pairs scored in 3 repeats
    table = Table(threshold_table(y, s, counts=counts), counts.genuine, counts.impostor)
    for r in table.rows:
        assert r.fpr_upper == table.fpr_upper(r.fpr) and r.fnr_upper == table.fnr_upper(r.fnr)
    assert len(table.rows) == len(GRID)
