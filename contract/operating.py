"""Operating points and what a table's sample size can show: the one rule behind every error rate claimed.

A rate measured on n pairs says little below about 3/n: with 56 different-artist pairs and none of them accepted,
a false-positive rate of 5 % is still consistent with what was seen. So every rate a table gives comes with its
one-sided 95 % Clopper–Pearson upper bound (`rate_upper`), and the strict operating points are chosen on the
bound, never on the point estimate (`operating_point`):

- `max_fpr=f`: the smallest threshold whose FPR upper bound is ≤ f;
- `min_precision=p`: the smallest threshold whose precision lower bound (`precision_lower`) is ≥ p;
- `threshold=t`, or the default point (the caller's, else the table's equal-error row): the rates linearly
  interpolated at t, with their upper bounds;
- no threshold meets `max_fpr` / `min_precision` with that confidence: `Unreachable`, saying what n can show
  ("with 56 different-artist pairs the lowest false-positive rate shown at 95 % confidence is 0.052").

The three-way verdict (`three_way`) reads a score against two points of one table: "consistent" only at or above
the strict point (the caller's strictness, else `max_fpr=STRICT_MAX_FPR` by the rule above), "not consistent"
below the equal-error (default) point, "inconclusive" between. A strict point the caller did not ask for and the
table cannot show is no error: then nothing is ever "consistent", and `ThreeWay.unreachable` says why.

A `Table` is a calibration table with the effective counts behind it. A card written before the counts were
recorded has none: its bounds are None (unknown, not invented), and `max_fpr` / `min_precision` fall back to
the point estimates, as they were chosen before.

The bounds treat the counted pairs (or trials) as independent; pairs share paintings, so where anything they
are optimistic, not pessimistic. The service (service/serving/strictness.py), training's checks
(training/evaluation/realeval.py) and its card writer (training/evaluation/evaluate.py) all call this module.
Covered by tests/contract/test_operating.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from contract.card import Calibration, CalibrationRow, PortfolioCalibration

CONFIDENCE = 0.95
STRICT_MAX_FPR = 0.01  # the verdict's strict point when the caller chooses none: at most 1 % false matches
CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT = "consistent", "inconclusive", "not_consistent"
VERDICTS = (CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT)
_AT = f"at {CONFIDENCE * 100:.0f} % confidence"


def rate_upper(rate: float, n: int | None, confidence: float = CONFIDENCE) -> float | None:
    """One-sided Clopper–Pearson upper bound of a rate observed as `rate` on `n` trials (None: n unknown).

    k = rate·n need not be a whole number (rates interpolated between rows, or averaged over repeats): the bound
    is the Beta quantile, which is defined for any k in [0, n]. No trials show nothing: 1."""
    if n is None:
        return None
    if n <= 0:
        return 1.0
    k = min(max(float(rate), 0.0), 1.0) * n
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1.0, n - k))


def precision_lower(
    recall: float, fpr: float, genuine: int | None, impostor: int | None, confidence: float = CONFIDENCE
) -> float | None:
    """One-sided Clopper–Pearson lower bound of precision tp / (tp + fp), with tp = recall·genuine and
    fp = fpr·impostor (None: a count unknown). Nothing accepted shows nothing: 0."""
    if genuine is None or impostor is None:
        return None
    tp = min(max(float(recall), 0.0), 1.0) * genuine
    fp = min(max(float(fpr), 0.0), 1.0) * impostor
    if tp <= 0.0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, tp, fp + 1.0))


@dataclass(frozen=True)
class Table:
    """A calibration table (rows by threshold ascending) and the effective counts behind it (None: unknown).

    `unit` names what was counted, for messages: "pairs" (compare) or "trials" (verify's leave-one-out)."""

    rows: Sequence[CalibrationRow]
    genuine: int | None = None
    impostor: int | None = None
    unit: str = "pairs"

    @classmethod
    def pair_of(cls, calibration: Calibration) -> Table:
        return cls(list(calibration.pair), calibration.genuine_pairs, calibration.impostor_pairs, "pairs")

    @classmethod
    def portfolio_of(cls, portfolio: PortfolioCalibration) -> Table:
        return cls(list(portfolio.table), portfolio.genuine_trials, portfolio.impostor_trials, "trials")

    @property
    def counted(self) -> bool:
        """Both counts known: every bound can be given."""
        return self.genuine is not None and self.impostor is not None

    @property
    def confidence(self) -> float | None:
        return CONFIDENCE if self.counted else None

    def fpr_upper(self, fpr: float) -> float | None:
        return rate_upper(fpr, self.impostor)

    def fnr_upper(self, fnr: float) -> float | None:
        return rate_upper(fnr, self.genuine)

    def precision_lower(self, row: CalibrationRow) -> float | None:
        return precision_lower(row.recall, row.fpr, self.genuine, self.impostor)

    def lowest_fpr_shown(self) -> float | None:
        """The smallest FPR upper bound any threshold can have: nothing accepted of `impostor` pairs (≈ 3/n)."""
        return rate_upper(0.0, self.impostor)


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold, the rates expected there and their upper bounds (None: the table's counts are unknown)."""

    threshold: float
    fpr: float
    fnr: float
    fpr_upper: float | None
    fnr_upper: float | None
    rule: str


class Unreachable(ValueError):
    """No threshold of the table meets the asked operating point (with the table's confidence, when counted)."""


def rates_at(rows: Sequence[CalibrationRow], threshold: float) -> tuple[float, float]:
    """Expected (FPR, FNR) at any threshold, linearly interpolated between rows (outside the table: the end row)."""
    ts = np.array([r.threshold for r in rows], np.float64)
    fpr = float(np.interp(threshold, ts, [r.fpr for r in rows]))
    fnr = float(np.interp(threshold, ts, [r.fnr for r in rows]))
    return fpr, fnr


def equal_error_row(rows: Sequence[CalibrationRow]) -> CalibrationRow:
    """The row where FPR and FNR are closest (the lowest such threshold): the default operating point."""
    if not rows:
        raise ValueError("empty calibration table")
    return min(rows, key=lambda r: (abs(r.fpr - r.fnr), r.threshold))


def equal_error_point(rows: Sequence[CalibrationRow], label: str) -> tuple[float, str]:
    """The equal-error threshold and a rule naming it ("equal error rate of <label> (FPR …, FNR …)")."""
    row = equal_error_row(rows)
    return row.threshold, f"equal error rate of {label} (FPR {row.fpr:.3f}, FNR {row.fnr:.3f})"


def _known(bound: float | None) -> float:
    assert bound is not None, "counted tables have every bound"
    return bound


def _at(table: Table, threshold: float, rule: str) -> OperatingPoint:
    fpr, fnr = rates_at(table.rows, threshold)
    return OperatingPoint(float(threshold), fpr, fnr, table.fpr_upper(fpr), table.fnr_upper(fnr), rule)


def operating_point(
    table: Table,
    *,
    threshold: float | None = None,
    max_fpr: float | None = None,
    min_precision: float | None = None,
    default: tuple[float, str] | None = None,
) -> OperatingPoint:
    """The operating point of `table` for at most one of `threshold`, `max_fpr`, `min_precision`; with none,
    `default` = (threshold, rule), else the table's equal-error row. See the module docstring for the rule."""
    rows = table.rows
    if not rows:
        raise ValueError("empty calibration table")
    if sum(v is not None for v in (threshold, max_fpr, min_precision)) > 1:
        raise ValueError("at most one of threshold, max_fpr, min_precision")
    if max_fpr is not None:
        f = float(max_fpr)
        if table.impostor is None:  # no count: the point estimate, as before counts were recorded
            row = next((r for r in rows if r.fpr <= f), None)
            if row is None:
                lowest = min(r.fpr for r in rows)
                raise Unreachable(f"no calibrated threshold reaches a false-positive rate ≤ {f:g} (lowest is {lowest})")
        else:
            row = next((r for r in rows if _known(table.fpr_upper(r.fpr)) <= f), None)
            if row is None:
                shown = table.lowest_fpr_shown()
                raise Unreachable(
                    f"with {table.impostor} different-artist {table.unit} the lowest false-positive rate shown {_AT} "
                    f"is {shown:.3f}; max_fpr={f:g} asks for less than these "
                    f"{table.unit} can show"
                )
        return _at(table, row.threshold, f"max_fpr<={f:g}")
    if min_precision is not None:
        p = float(min_precision)
        if not table.counted:
            row = next((r for r in rows if r.precision >= p), None)
            if row is None:
                best = max(r.precision for r in rows)
                raise Unreachable(f"no calibrated threshold reaches a precision ≥ {p:g} (highest is {best})")
        else:
            row = next((r for r in rows if _known(table.precision_lower(r)) >= p), None)
            if row is None:
                best = max(_known(table.precision_lower(r)) for r in rows)
                raise Unreachable(
                    f"with {table.genuine} same-artist and {table.impostor} different-artist {table.unit} the "
                    f"highest precision shown {_AT} is {best:.3f}; min_precision={p:g} "
                    f"asks for more than these {table.unit} can show"
                )
        return _at(table, row.threshold, f"min_precision>={p:g}")
    if threshold is not None:
        return _at(table, float(threshold), f"threshold={float(threshold):g}")
    if default is None:
        default = equal_error_point(rows, "the calibration table")
    return _at(table, default[0], default[1])


@dataclass(frozen=True)
class ThreeWay:
    """The two points of a three-way verdict on one table. `strict` is None when the default strict point is
    unreachable (`unreachable` says why): then no score is "consistent"."""

    strict: OperatingPoint | None
    equal_error: OperatingPoint
    unreachable: str = ""
    asked: bool = False  # the strict point is the caller's own strictness (else the default max_fpr)

    def verdict(self, score: float) -> str:
        """ "consistent" at or above the strict point; else "not consistent" below the equal-error point; else
        "inconclusive". A strict point below the equal-error one leaves no inconclusive scores."""
        if self.strict is not None and score >= self.strict.threshold:
            return CONSISTENT
        if score < self.equal_error.threshold:
            return NOT_CONSISTENT
        return INCONCLUSIVE


def three_way(
    table: Table,
    *,
    threshold: float | None = None,
    max_fpr: float | None = None,
    min_precision: float | None = None,
    default: tuple[float, str] | None = None,
) -> ThreeWay:
    """The verdict's points on `table`: the strict point is the caller's strictness (at most one of `threshold`,
    `max_fpr`, `min_precision`; unreachable: `Unreachable`, the caller asked for it), else `max_fpr=
    STRICT_MAX_FPR` (unreachable: no strict point, and why); the equal-error point is `default` (else the
    table's equal-error row), as `operating_point` gives them."""
    lower = operating_point(table, default=default)
    asked = any(v is not None for v in (threshold, max_fpr, min_precision))
    if asked:
        strict = operating_point(table, threshold=threshold, max_fpr=max_fpr, min_precision=min_precision)
        return ThreeWay(strict, lower, asked=True)
    try:
        return ThreeWay(operating_point(table, max_fpr=STRICT_MAX_FPR), lower)
    except Unreachable as e:
        return ThreeWay(None, lower, unreachable=str(e))
