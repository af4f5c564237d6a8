"""contract/aggregation.py: the mean of the top-m pair scores, for one portfolio and for many at once."""

from __future__ import annotations

import numpy as np
import pytest

from contract.aggregation import aggregate, aggregate_rows, top_m
from contract.card import Aggregation


def test_aggregate_is_mean_of_top_m() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert aggregate(s, Aggregation(top_m=2)) == pytest.approx(0.8)
    assert aggregate(s, Aggregation(top_m=5)) == pytest.approx(0.5)
    assert aggregate(s, Aggregation(top_m=50)) == pytest.approx(0.5)  # all of them when fewer
    assert aggregate(np.array([0.42]), Aggregation(top_m=5)) == pytest.approx(0.42)
    assert top_m(s, Aggregation(top_m=3)).tolist() == [1, 3, 2]


def test_aggregate_ties_are_stable_and_empty_is_an_error() -> None:
    assert top_m(np.array([0.5, 0.5, 0.5]), Aggregation(top_m=2)).tolist() == [0, 1]
    with pytest.raises(ValueError):
        aggregate(np.array([]), Aggregation())


def test_non_finite_scores_are_an_error() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        aggregate(np.array([0.5, np.inf]), Aggregation(top_m=2))


def test_rows() -> None:
    s = np.array([[0.1, 0.9, 0.5, 0.7], [0.2, 0.2, 0.2, 0.2]])
    np.testing.assert_allclose(aggregate_rows(s, Aggregation(top_m=2)), [0.8, 0.2])
    np.testing.assert_allclose(aggregate_rows(s, Aggregation(top_m=10)), [0.55, 0.2])  # fewer than m: all
    with pytest.raises(ValueError, match="at least one reference"):
        aggregate_rows(np.zeros((3, 0)), Aggregation())
    with pytest.raises(ValueError):
        aggregate_rows(np.zeros(4), Aggregation())  # one portfolio is `aggregate`'s, not a [T, k] matrix


@pytest.mark.parametrize("m", [1, 3, 5, 7])
def test_one_row_at_a_time_is_the_same_as_all_rows(m: int) -> None:
    scores = np.random.default_rng(m).random((50, 6)).astype(np.float32)
    agg = Aggregation(top_m=m)
    rows = aggregate_rows(scores, agg)
    assert [aggregate(r, agg) for r in scores] == rows.tolist()  # exactly, not approximately
