"""contract/calibration.py: `threshold_table` counts exactly what a naive per-threshold loop counts; GRID's shape."""

from __future__ import annotations

import numpy as np
import pytest

from contract.calibration import GRID, SampleSize, sample_size, threshold_table
from contract.operating import rate_upper


def naive_table(y: np.ndarray, s: np.ndarray, grid: tuple[float, ...]) -> list[tuple[float, ...]]:
    """One threshold at a time, straight from the definitions: "same" when score >= threshold."""
    y = np.asarray(y, bool)
    rows: list[tuple[float, ...]] = []
    for t in grid:
        accepted = s >= t
        tp = int(np.sum(accepted & y))
        fp = int(np.sum(accepted & ~y))
        pos, neg = int(y.sum()), int((~y).sum())
        rows.append(
            (
                float(t),
                fp / neg if neg else 0.0,
                (pos - tp) / pos if pos else 0.0,
                tp / (tp + fp) if tp + fp else 1.0,
                tp / pos if pos else 0.0,
            )
        )
    return rows


def as_tuples(table: list) -> list[tuple[float, ...]]:
    return [(r.threshold, r.fpr, r.fnr, r.precision, r.recall) for r in table]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_a_naive_loop_on_random_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    y = rng.random(n) < 0.4
    s = np.clip(rng.normal(0.35 + 0.4 * y, 0.2), 0.0, 1.0)
    # a third of the scores sit exactly on grid values: ties must count as accepted (>=)
    on_grid = rng.random(n) < 0.33
    s[on_grid] = rng.choice(np.array(GRID), int(on_grid.sum()))
    got = as_tuples(threshold_table(y, s))
    want = naive_table(y, s, GRID)
    assert len(got) == len(GRID)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-12)


def test_ties_at_a_threshold_are_accepted() -> None:
    y = np.array([True, False, True, False])
    s = np.array([0.5, 0.5, 0.2, 0.8])
    (row,) = threshold_table(y, s, grid=(0.5,))
    # accepted: 0.5 (pos), 0.5 (neg), 0.8 (neg)
    assert row.recall == 0.5 and row.fnr == 0.5
    assert row.fpr == 1.0
    assert row.precision == pytest.approx(1 / 3)


def test_custom_grid_and_integer_labels() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.5).astype(int)
    s = rng.random(200)
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    got = as_tuples(threshold_table(y, s, grid))
    assert [g[0] for g in got] == list(grid)
    for g, w in zip(got, naive_table(y, s, grid), strict=True):
        assert g == pytest.approx(w, abs=1e-12)


def test_precision_is_one_when_nothing_is_accepted() -> None:
    y = np.array([True, False, True, False, False])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    table = threshold_table(y, s)
    above = [r for r in table if r.threshold > 0.5]
    assert above, "GRID reaches above the highest score"
    for r in above:
        assert r.precision == 1.0 and r.fpr == 0.0 and r.fnr == 1.0 and r.recall == 0.0
    # at threshold 0 everything is accepted
    assert table[0].threshold == 0.0
    assert (table[0].fpr, table[0].fnr, table[0].recall) == (1.0, 0.0, 1.0)
    assert table[0].precision == pytest.approx(2 / 5)


def test_one_class_only_does_not_divide_by_zero() -> None:
    s = np.array([0.2, 0.6, 0.9])
    only_pos = threshold_table(np.ones(3, bool), s)
    assert all(r.fpr == 0.0 for r in only_pos)
    assert all(r.precision == 1.0 for r in only_pos)
    only_neg = threshold_table(np.zeros(3, bool), s)
    assert all(r.fnr == 0.0 and r.recall == 0.0 for r in only_neg)


def test_rows_sorted_and_rates_monotone() -> None:
    rng = np.random.default_rng(9)
    y = rng.random(300) < 0.5
    s = rng.random(300)
    table = threshold_table(y, s)
    ts = [r.threshold for r in table]
    assert ts == sorted(ts) and ts == [float(t) for t in GRID]
    fprs, fnrs = [r.fpr for r in table], [r.fnr for r in table]
    assert all(a >= b for a, b in zip(fprs, fprs[1:], strict=False))
    assert all(a <= b for a, b in zip(fnrs, fnrs[1:], strict=False))
    assert all(r.fnr == pytest.approx(1 - r.recall) for r in table)


def test_grid_properties() -> None:
    g = np.array(GRID)
    assert GRID[0] == 0.0 and GRID[-1] == 1.0
    assert np.all(np.diff(g) > 0), "strictly increasing, no duplicates"
    assert len(set(GRID)) == len(GRID)
    assert np.all((g >= 0.0) & (g <= 1.0))
    # every 0.01 step is a threshold (cards and galleries can name 0.xx thresholds)
    assert {round(i / 100, 2) for i in range(101)} <= set(GRID)
    # finer towards the ends: 0.001 steps on [0.9, 0.99], 0.0001 steps on [0.99, 1], 0.001 steps on [0, 0.01]
    assert np.max(np.diff(g[(g >= 0.9) & (g <= 0.99)])) <= 0.001 + 1e-12
    assert np.max(np.diff(g[g >= 0.99])) <= 0.0001 + 1e-12
    assert np.max(np.diff(g[g <= 0.01])) <= 0.001 + 1e-12
    assert np.max(np.diff(g)) <= 0.01 + 1e-12
    assert 0.9999 in GRID and 0.001 in GRID


def test_sample_size_counts_repeats_once_and_duplicates_once() -> None:
    y = np.array([True, True, False, False, False, False])
    assert sample_size(y) == SampleSize(2, 4)
    # the same pairs scored in 2 cross-validation repeats: counted per repeat
    assert sample_size(np.concatenate([y, y]), repeats=2) == SampleSize(2, 4)
    # a pair drawn twice (a, b and b, a sorted alike) counts once
    ids = np.array([[0, 1], [0, 1], [2, 3], [2, 3], [2, 4], [3, 4]])
    assert sample_size(y, ids=ids) == SampleSize(1, 3)
    with pytest.raises(ValueError):
        sample_size(y, repeats=0)


def test_rows_carry_upper_bounds_for_the_counts_behind_them() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(400) < 0.25
    s = rng.random(400)
    rows = threshold_table(y, s)
    n = sample_size(y)
    for r in rows:
        assert r.fpr_upper == rate_upper(r.fpr, n.impostor) and r.fnr_upper == rate_upper(r.fnr, n.genuine)
        assert r.fpr <= (r.fpr_upper or 0) and r.fnr <= (r.fnr_upper or 0)
    # fewer effective pairs (the same pairs in 4 repeats): the same rates, wider bounds
    wide = threshold_table(y, s, counts=sample_size(y, repeats=4))
    assert [r.fpr for r in wide] == [r.fpr for r in rows]
    assert all((w.fpr_upper or 0) >= (r.fpr_upper or 0) for w, r in zip(wide, rows, strict=True))
    assert wide[len(wide) // 2].fpr_upper > rows[len(rows) // 2].fpr_upper  # type: ignore[operator]
