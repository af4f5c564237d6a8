"""service/serving/strictness.py: strictness validation, operating-point resolution (contract.operating's rule, its
"unreachable" as the caller's 422), portfolio table choice. Tables without counts (older cards) keep the point
estimates' rule; counted tables are judged on their bounds."""

from __future__ import annotations

import math

import pytest

from contract.card import Calibration, CalibrationRow, PortfolioCalibration
from contract.operating import OperatingPoint, Table, equal_error_point, rate_upper, rates_at
from service.api.errors import status_of
from service.errors import ServiceError
from service.serving.strictness import Strictness, judge, portfolio_table, resolve


def row(t: float, fpr: float, fnr: float, precision: float) -> CalibrationRow:
    return CalibrationRow(threshold=t, fpr=fpr, fnr=fnr, precision=precision, recall=1 - fnr)


ROWS = [
    row(0.0, 1.00, 0.00, 0.50),
    row(0.2, 0.60, 0.05, 0.61),
    row(0.4, 0.20, 0.10, 0.82),
    row(0.6, 0.05, 0.20, 0.94),
    row(0.8, 0.01, 0.40, 0.98),
    row(1.0, 0.00, 1.00, 1.00),
]
TABLE = Table(ROWS)  # no counts recorded, as in cards written before them
DEFAULT = (0.4, "EER on val pairs")


@pytest.mark.parametrize(
    "kw",
    [dict(threshold=0.5, max_fpr=0.1), dict(max_fpr=0.1, min_precision=0.9), dict(threshold=0.1, min_precision=0.5)],
)
def test_conflicting_strictness(kw: dict) -> None:
    with pytest.raises(ServiceError) as e:
        Strictness(**kw)
    assert (status_of(e.value), e.value.code) == (400, "conflicting_strictness")


@pytest.mark.parametrize("value", [-0.01, 1.01, math.nan, math.inf, "0.5", True])
def test_threshold_range(value: object) -> None:
    with pytest.raises(ServiceError) as e:
        Strictness(threshold=value)  # type: ignore[arg-type]
    assert (status_of(e.value), e.value.code) == (422, "invalid_threshold")


@pytest.mark.parametrize("name", ["max_fpr", "min_precision"])
@pytest.mark.parametrize("value", [-0.5, 2.0, math.nan])
def test_operating_point_range(name: str, value: float) -> None:
    with pytest.raises(ServiceError) as e:
        Strictness(**{name: value})
    assert (status_of(e.value), e.value.code) == (422, "invalid_operating_point")


def test_bounds_are_valid() -> None:
    assert Strictness(threshold=0).threshold == 0 and Strictness(threshold=1).threshold == 1
    assert Strictness(max_fpr=0.5).max_fpr == 0.5 and Strictness(max_fpr=1e-4).max_fpr == 1e-4
    assert Strictness(min_precision=0.999).min_precision == 0.999


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("max_fpr", 1, "did you mean max_fpr=0.01 (1 %)?"),
        ("max_fpr", 5.0, "did you mean max_fpr=0.05 (5 %)?"),
        ("max_fpr", 0.0, "0.01 means 1 %"),
        ("max_fpr", 0.6, "above one half"),
        ("min_precision", 99, "did you mean min_precision=0.99 (99 %)?"),
        ("min_precision", 1.0, "0.99 means 99 %"),
        ("min_precision", 0.0, "0.99 means 99 %"),
    ],
)
def test_strictness_that_makes_no_sense_is_refused_with_a_hint(name: str, value: float, hint: str) -> None:
    """max_fpr=1 (someone meaning 1 %) would match everything: refused, saying what the value means."""
    with pytest.raises(ServiceError) as e:
        Strictness(**{name: value})
    assert (status_of(e.value), e.value.code) == (422, "invalid_operating_point")
    assert hint in e.value.message


COUNTED = Table(ROWS, genuine=100, impostor=400)


def test_the_verdict_is_strict_by_default() -> None:
    """Without a strictness the strict point is max_fpr 0.01 on the bound; the lower one the default point."""
    tw = judge(COUNTED, Strictness(), DEFAULT)
    assert tw.strict is not None and tw.strict.rule == "max_fpr<=0.01" and not tw.asked
    assert tw.strict.fpr_upper is not None and tw.strict.fpr_upper <= 0.01 and tw.strict.threshold == 1.0
    assert tw.equal_error.threshold == 0.4 and tw.equal_error.rule == "EER on val pairs"
    assert [tw.verdict(s) for s in (0.39, 0.4, 0.99, 1.0)] == [
        "not_consistent",
        "inconclusive",
        "inconclusive",
        "consistent",
    ]


def test_the_verdict_takes_the_callers_strictness_as_its_strict_point() -> None:
    tw = judge(COUNTED, Strictness(threshold=0.6), DEFAULT)
    assert tw.asked and tw.strict is not None and tw.strict.threshold == 0.6
    assert [tw.verdict(s) for s in (0.3, 0.5, 0.6)] == ["not_consistent", "inconclusive", "consistent"]
    low = judge(COUNTED, Strictness(threshold=0.2), DEFAULT)  # below the equal-error point: nothing in between
    assert [low.verdict(s) for s in (0.1, 0.2, 0.3)] == ["not_consistent", "consistent", "consistent"]


def test_an_unreachable_default_strict_point_is_never_consistent() -> None:
    """56 different-artist trials cannot show 1 %: no strict point, and why — not an error, nothing asked for it."""
    small = Table(ROWS, genuine=14, impostor=56, unit="trials")
    tw = judge(small, Strictness(), DEFAULT)
    assert tw.strict is None and "with 56 different-artist trials" in tw.unreachable
    assert [tw.verdict(s) for s in (0.0, 0.39, 0.4, 1.0)] == ["not_consistent"] * 2 + ["inconclusive"] * 2
    with pytest.raises(ServiceError) as e:  # the same point asked for is the caller's error
        judge(small, Strictness(max_fpr=0.01), DEFAULT)
    assert e.value.code == "operating_point_unreachable"


def test_default_is_recommended() -> None:
    op = resolve(TABLE, Strictness(), DEFAULT)
    assert op == OperatingPoint(0.4, 0.20, 0.10, None, None, "EER on val pairs")


def test_threshold_on_a_row() -> None:
    op = resolve(TABLE, Strictness(threshold=0.6), DEFAULT)
    assert (op.threshold, op.fpr, op.fnr) == (0.6, 0.05, 0.20)
    assert op.rule == "threshold=0.6"


def test_threshold_between_rows_is_interpolated() -> None:
    op = resolve(TABLE, Strictness(threshold=0.5), DEFAULT)
    assert op.threshold == 0.5
    assert op.fpr == pytest.approx(0.125)
    assert op.fnr == pytest.approx(0.15)


def test_rates_at_ends() -> None:
    assert rates_at(ROWS, 0.0) == (1.0, 0.0)
    assert rates_at(ROWS, 1.0) == (0.0, 1.0)


@pytest.mark.parametrize(("max_fpr", "threshold"), [(0.2, 0.4), (0.19, 0.6), (0.05, 0.6), (0.5, 0.4), (0.001, 1.0)])
def test_max_fpr_without_counts_takes_the_smallest_threshold_meeting_the_estimate(
    max_fpr: float, threshold: float
) -> None:
    op = resolve(TABLE, Strictness(max_fpr=max_fpr), DEFAULT)
    assert op.threshold == threshold
    assert op.fpr <= max_fpr and op.fpr_upper is None
    assert op.rule == f"max_fpr<={max_fpr:g}"


@pytest.mark.parametrize(("max_fpr", "threshold"), [(0.3, 0.4), (0.1, 0.6), (0.06, 0.8), (0.02, 1.0)])
def test_max_fpr_with_counts_meets_the_upper_bound(max_fpr: float, threshold: float) -> None:
    counted = Table(ROWS, genuine=100, impostor=400)
    op = resolve(counted, Strictness(max_fpr=max_fpr), DEFAULT)
    assert op.threshold == threshold
    assert op.fpr_upper == rate_upper(op.fpr, 400) and op.fpr_upper is not None and op.fpr_upper <= max_fpr


def test_max_fpr_unreachable() -> None:
    table = Table(ROWS[:-1])  # lowest FPR is 0.01
    with pytest.raises(ServiceError) as e:
        resolve(table, Strictness(max_fpr=0.001), DEFAULT)
    assert (status_of(e.value), e.value.code) == (422, "operating_point_unreachable")
    # with counts: what they can show, even though the table has a row with FPR 0
    with pytest.raises(ServiceError) as e:
        resolve(Table(ROWS, genuine=14, impostor=56), Strictness(max_fpr=0.001), DEFAULT)
    assert (status_of(e.value), e.value.code) == (422, "operating_point_unreachable")
    assert "with 56 different-artist pairs the lowest false-positive rate shown at 95 % confidence is 0.052" in (
        e.value.message
    )


@pytest.mark.parametrize(("p", "threshold"), [(0.9, 0.6), (0.94, 0.6), (0.95, 0.8), (0.5, 0.0)])
def test_min_precision(p: float, threshold: float) -> None:
    op = resolve(TABLE, Strictness(min_precision=p), DEFAULT)
    assert op.threshold == threshold
    assert op.rule.startswith("min_precision>=")


def test_min_precision_unreachable() -> None:
    with pytest.raises(ServiceError) as e:
        resolve(Table(ROWS[:-2]), Strictness(min_precision=0.99), DEFAULT)
    assert e.value.code == "operating_point_unreachable"


def _cal(ks: list[int]) -> Calibration:
    return Calibration(
        pair=ROWS,
        portfolio=[PortfolioCalibration(k=k, table=[row(0.0, 1, 0, 0.5), row(k / 100, 0.5, 0.5, 0.5)]) for k in ks],
        recommended_threshold=0.4,
        recommended_rule="eer",
    )


@pytest.mark.parametrize(
    ("size", "k"), [(1, 1), (2, 1), (3, 3), (4, 3), (9, 5), (10, 10), (19, 10), (20, 20), (500, 20)]
)
def test_portfolio_table_largest_k_not_above_size(size: int, k: int) -> None:
    table, chosen = portfolio_table(_cal([20, 1, 10, 3, 5]), size)
    assert chosen == k
    assert table.rows[-1].threshold == k / 100 and table.unit == "trials"


def test_portfolio_smaller_than_every_k_takes_the_smallest() -> None:
    assert portfolio_table(_cal([3, 5]), 1)[1] == 3


def test_no_portfolio_tables_falls_back_to_pairs() -> None:
    table, k = portfolio_table(_cal([]), 7)
    assert k is None and list(table.rows) == ROWS and table.unit == "pairs"


def test_portfolio_tables_carry_their_trial_counts() -> None:
    cal = _cal([1, 3])
    counted = cal.model_copy(
        update={"portfolio": [p.model_copy(update={"genuine_trials": 9, "impostor_trials": 90}) for p in cal.portfolio]}
    )
    table, _ = portfolio_table(counted, 2)
    assert (table.genuine, table.impostor, table.confidence) == (9, 90, 0.95)
    assert portfolio_table(cal, 2)[0].confidence is None


def test_equal_error_point_is_where_fpr_meets_fnr() -> None:
    threshold, rule = equal_error_point(ROWS, "the test table")
    row = next(r for r in ROWS if r.threshold == threshold)
    assert abs(row.fpr - row.fnr) == min(abs(r.fpr - r.fnr) for r in ROWS)
    assert "the test table" in rule and f"{row.fpr:.3f}" in rule
