"""service/scoring.py: strictness validation, operating-point resolution, aggregation, portfolio table choice."""

from __future__ import annotations

import math

import pytest

from contract.card import Calibration, CalibrationRow, PortfolioCalibration
from service.api.errors import status_of
from service.errors import ServiceError
from service.scoring import (
    OperatingPoint,
    Strictness,
    equal_error_point,
    portfolio_table,
    rates_at,
    resolve,
)


def row(t: float, fpr: float, fnr: float, precision: float) -> CalibrationRow:
    return CalibrationRow(threshold=t, fpr=fpr, fnr=fnr, precision=precision, recall=1 - fnr)


TABLE = [
    row(0.0, 1.00, 0.00, 0.50),
    row(0.2, 0.60, 0.05, 0.61),
    row(0.4, 0.20, 0.10, 0.82),
    row(0.6, 0.05, 0.20, 0.94),
    row(0.8, 0.01, 0.40, 0.98),
    row(1.0, 0.00, 1.00, 1.00),
]


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
    assert Strictness(threshold=0).threshold == 0
    assert Strictness(max_fpr=1.0).max_fpr == 1.0


def test_default_is_recommended() -> None:
    op = resolve(TABLE, Strictness(), recommended=0.4, recommended_rule="EER on val pairs")
    assert op == OperatingPoint(0.4, 0.20, 0.10, "EER on val pairs")


def test_threshold_on_a_row() -> None:
    op = resolve(TABLE, Strictness(threshold=0.6), 0.4)
    assert (op.threshold, op.expected_fpr, op.expected_fnr) == (0.6, 0.05, 0.20)
    assert op.rule == "threshold=0.6"


def test_threshold_between_rows_is_interpolated() -> None:
    op = resolve(TABLE, Strictness(threshold=0.5), 0.4)
    assert op.threshold == 0.5
    assert op.expected_fpr == pytest.approx(0.125)
    assert op.expected_fnr == pytest.approx(0.15)


def test_rates_at_ends() -> None:
    assert rates_at(TABLE, 0.0) == (1.0, 0.0)
    assert rates_at(TABLE, 1.0) == (0.0, 1.0)


@pytest.mark.parametrize(("max_fpr", "threshold"), [(0.2, 0.4), (0.19, 0.6), (0.05, 0.6), (1.0, 0.0), (0.0, 1.0)])
def test_max_fpr_takes_the_smallest_threshold_meeting_it(max_fpr: float, threshold: float) -> None:
    op = resolve(TABLE, Strictness(max_fpr=max_fpr), 0.4)
    assert op.threshold == threshold
    assert op.expected_fpr <= max_fpr
    assert op.rule == f"max_fpr<={max_fpr:g}"


def test_max_fpr_unreachable() -> None:
    table = TABLE[:-1]  # lowest FPR is 0.01
    with pytest.raises(ServiceError) as e:
        resolve(table, Strictness(max_fpr=0.001), 0.4)
    assert (status_of(e.value), e.value.code) == (422, "operating_point_unreachable")


@pytest.mark.parametrize(("p", "threshold"), [(0.9, 0.6), (0.94, 0.6), (0.95, 0.8), (0.5, 0.0)])
def test_min_precision(p: float, threshold: float) -> None:
    op = resolve(TABLE, Strictness(min_precision=p), 0.4)
    assert op.threshold == threshold
    assert op.rule.startswith("min_precision>=")


def test_min_precision_unreachable() -> None:
    with pytest.raises(ServiceError) as e:
        resolve(TABLE[:-2], Strictness(min_precision=0.99), 0.4)
    assert e.value.code == "operating_point_unreachable"


def _cal(ks: list[int]) -> Calibration:
    return Calibration(
        pair=TABLE,
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
    assert table[-1].threshold == k / 100


def test_portfolio_smaller_than_every_k_takes_the_smallest() -> None:
    assert portfolio_table(_cal([3, 5]), 1)[1] == 3


def test_no_portfolio_tables_falls_back_to_pairs() -> None:
    table, k = portfolio_table(_cal([]), 7)
    assert k is None and table == TABLE


def test_equal_error_point_is_where_fpr_meets_fnr() -> None:
    threshold, rule = equal_error_point(TABLE, "the test table")
    row = next(r for r in TABLE if r.threshold == threshold)
    assert abs(row.fpr - row.fnr) == min(abs(r.fpr - r.fnr) for r in TABLE)
    assert "the test table" in rule and f"{row.fpr:.3f}" in rule
