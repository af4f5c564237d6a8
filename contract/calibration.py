"""Calibration tables: scored labelled pairs (or portfolio trials) → one row per threshold of GRID.

The one implementation behind the model card's tables (training/evaluate.py, training/realeval.py) and the
service's gallery calibration (service/calibration.py), so a table means the same wherever it was made.
Covered by tests/contract/test_calibration.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract.card import CalibrationRow

# 0.01 steps everywhere, finer towards the ends: strict operating points (max_fpr=0.01, min_precision=0.99) live
# where scores crowd near 1, and a 0.01 grid there forced needlessly high thresholds (FNR 0.84 at 1 % FPR).
GRID = tuple(
    sorted(
        {round(i / 100, 2) for i in range(101)}
        | {round(0.9 + i / 1000, 3) for i in range(100)}
        | {round(0.99 + i / 10_000, 4) for i in range(100)}
        | {round(i / 1000, 3) for i in range(1, 10)}
    )
)


def threshold_table(y: np.ndarray, s: np.ndarray, grid: Sequence[float] = GRID) -> list[CalibrationRow]:
    """One row per threshold: a pair is called "same" when its score >= threshold.

    Precision with no accepted pair is reported as 1.0: no false acceptances were made.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    # counts of scores >= t for every t at once (sorted scores, binary search): tables over 10^6 trials stay cheap
    s_pos, s_neg = np.sort(s[y]), np.sort(s[~y])
    rows = []
    for t in grid:
        tp = int(len(s_pos) - np.searchsorted(s_pos, t, side="left"))
        fp = int(len(s_neg) - np.searchsorted(s_neg, t, side="left"))
        fn = int(y.sum()) - tp
        rows.append(
            CalibrationRow(
                threshold=float(t),
                fpr=fp / neg,
                fnr=fn / pos,
                precision=tp / (tp + fp) if tp + fp else 1.0,
                recall=tp / pos,
            )
        )
    return rows
