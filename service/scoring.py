"""From scores to decisions: strictness → operating point on the card's calibration, portfolio aggregation.

Pure functions over the card's tables; no model, no I/O. Caller errors are domain errors (service/errors.py).
Covered by tests/service/test_scoring.py.

Semantics (README and API docs repeat them):
- a pair/portfolio *matches* when `score >= threshold`;
- `threshold=t`: expected rates are linearly interpolated between the two calibration rows bracketing t
  (rows are 0.01 apart, 0.001 below 0.01 and from 0.9, 0.0001 from 0.99 — as training/evaluate.py writes the
  grid; outside the table, the end row);
- `max_fpr=f`: the smallest calibrated threshold whose FPR ≤ f (most sensitive threshold still meeting f);
- `min_precision=p`: the smallest calibrated threshold whose precision ≥ p;
- nothing: the card's recommended threshold, rates as for `threshold`.
Portfolio (verify) decisions use the table of the largest simulated portfolio size k ≤ the real portfolio's
size (the smallest k when the portfolio is smaller than all of them; the pair table when the card has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.card import Calibration, CalibrationRow
from service.errors import BadRequest, Invalid


@dataclass(frozen=True)
class Strictness:
    threshold: float | None = None
    max_fpr: float | None = None
    min_precision: float | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("threshold", "max_fpr", "min_precision") if getattr(self, n) is not None]
        if len(given) > 1:
            raise BadRequest(
                "conflicting_strictness",
                f"give at most one of threshold, max_fpr, min_precision (got {', '.join(given)})",
            )
        for name in given:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                code = "invalid_threshold" if name == "threshold" else "invalid_operating_point"
                raise Invalid(code, f"{name} must be a number between 0 and 1, not {value!r}")
            # NaN fails the range check above; infinities too


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    expected_fpr: float
    expected_fnr: float
    rule: str


def resolve(
    table: Sequence[CalibrationRow],
    strictness: Strictness,
    recommended: float,
    recommended_rule: str = "recommended",
) -> OperatingPoint:
    if not table:
        raise ValueError("empty calibration table")
    if strictness.max_fpr is not None:
        f = strictness.max_fpr
        row = next((r for r in table if r.fpr <= f), None)
        if row is None:
            raise Invalid(
                "operating_point_unreachable",
                f"no calibrated threshold reaches a false-positive rate ≤ {f} (lowest is {min(r.fpr for r in table)})",
            )
        return OperatingPoint(row.threshold, row.fpr, row.fnr, f"max_fpr<={f:g}")
    if strictness.min_precision is not None:
        p = strictness.min_precision
        row = next((r for r in table if r.precision >= p), None)
        if row is None:
            raise Invalid(
                "operating_point_unreachable",
                f"no calibrated threshold reaches a precision ≥ {p} (highest is {max(r.precision for r in table)})",
            )
        return OperatingPoint(row.threshold, row.fpr, row.fnr, f"min_precision>={p:g}")
    if strictness.threshold is not None:
        t = float(strictness.threshold)
        fpr, fnr = rates_at(table, t)
        return OperatingPoint(t, fpr, fnr, f"threshold={t:g}")
    fpr, fnr = rates_at(table, recommended)
    return OperatingPoint(float(recommended), fpr, fnr, recommended_rule)


def equal_error_point(table: Sequence[CalibrationRow], label: str) -> tuple[float, str]:
    """The calibrated threshold where FPR and FNR are closest (the EER point), and a rule naming it."""
    row = min(table, key=lambda r: (abs(r.fpr - r.fnr), r.threshold))
    return row.threshold, f"equal error rate of {label} (FPR {row.fpr:.3f}, FNR {row.fnr:.3f})"


def rates_at(table: Sequence[CalibrationRow], threshold: float) -> tuple[float, float]:
    """Expected (FPR, FNR) at any threshold, linearly interpolated between calibrated rows."""
    ts = np.array([r.threshold for r in table], np.float64)
    fpr = float(np.interp(threshold, ts, [r.fpr for r in table]))
    fnr = float(np.interp(threshold, ts, [r.fnr for r in table]))
    return fpr, fnr


def portfolio_table(calibration: Calibration, portfolio_size: int) -> tuple[list[CalibrationRow], int | None]:
    """The calibration table for a portfolio of this size and its k (None: the pair table, no portfolio ones)."""
    if not calibration.portfolio:
        return list(calibration.pair), None
    ordered = sorted(calibration.portfolio, key=lambda p: p.k)
    fitting = [p for p in ordered if p.k <= portfolio_size]
    chosen = fitting[-1] if fitting else ordered[0]
    return list(chosen.table), chosen.k
