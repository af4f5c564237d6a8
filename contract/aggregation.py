"""Portfolio aggregation: a query's pair scores against a portfolio's references → one score.

The card's `calibration.aggregation` says how (today only `top_mean`: the mean of the `top_m` highest pair
scores, all of them when the portfolio is smaller). Training simulates portfolios with `aggregate_rows` when
it builds the portfolio calibration tables (training/evaluation/evaluate.py), and the service judges real portfolios
with `aggregate`, which is `aggregate_rows` of one row, so the tables describe the very scores the service
computes. Covered by tests/contract/test_aggregation.py and tests/contract/test_parity.py.
"""

from __future__ import annotations

import math

import numpy as np

from contract.card import Aggregation


def _checked(aggregation: Aggregation) -> None:
    if aggregation.method != "top_mean":
        raise ValueError(f"unknown aggregation {aggregation.method!r}")


def top_m(scores: np.ndarray, aggregation: Aggregation) -> np.ndarray:
    """Indices of the `top_m` highest scores, highest first (all of them if fewer)."""
    scores = np.asarray(scores, np.float64)
    m = min(aggregation.top_m, len(scores))
    # stable on ties (lower index first) so decisions are reproducible
    return np.argsort(-scores, kind="stable")[:m]


def aggregate_rows(scores: np.ndarray, aggregation: Aggregation) -> np.ndarray:
    """[T, k] pair scores (T queries, each against k references) → [T] portfolio scores, float64."""
    _checked(aggregation)
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"expected [queries, references] scores with at least one reference, got {s.shape}")
    m = min(aggregation.top_m, s.shape[1])
    out: np.ndarray = -np.mean(np.sort(-s, axis=1)[:, :m], axis=1)
    return out


def aggregate(scores: np.ndarray, aggregation: Aggregation) -> float:
    """One query's pair scores against a portfolio → its score (mean of the top-m, as calibrated)."""
    if len(scores) == 0:
        raise ValueError("no scores to aggregate")
    value = float(aggregate_rows(np.asarray(scores, np.float64).reshape(1, -1), aggregation)[0])
    if not math.isfinite(value):
        raise ValueError("non-finite score")
    return value
