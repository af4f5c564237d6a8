"""Calibration tables: scored labelled pairs (or portfolio trials) → one row per threshold of GRID.

The one implementation behind the model card's tables (training/evaluation/evaluate.py, training/realmodel.py,
training/evaluation/realeval.py) and the service's gallery calibration (service/serving/calibration.py), so a table
means the same
wherever it was made. A table knows how many pairs stand behind it (`sample_size`): its rows carry the upper
bounds of their rates for that many (contract.operating), and the card records the counts beside the table.
Pairs scored in `repeats` repeated cross-validation splits count once per repeat, not once per score: the same
pairs scored ten times show no more than they show once. Covered by tests/contract/test_calibration.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.card import CalibrationRow
from contract.operating import rate_upper

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


@dataclass(frozen=True)
class SampleSize:
    """Effective counts behind a table: same-artist (genuine) and different-artist (impostor) pairs or trials."""

    genuine: int
    impostor: int


def sample_size(y: np.ndarray, repeats: int = 1, ids: np.ndarray | None = None) -> SampleSize:
    """How many pairs (trials) of each class the scores `y` labels stand for.

    `ids` [N, ...]: what each score is of (a pair's two image indices, sorted; a trial's query and references):
    a pair sampled twice counts once. `repeats`: the scores pool that many repeated cross-validation splits of
    the same pairs, so each class counts per repeat (rounded down)."""
    y = np.asarray(y).astype(bool)
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    if ids is None:
        genuine, impostor = int(y.sum()), int((~y).sum())
    else:
        ids = np.asarray(ids).reshape(len(y), -1)
        genuine = len(np.unique(ids[y], axis=0))
        impostor = len(np.unique(ids[~y], axis=0))
    return SampleSize(genuine // repeats, impostor // repeats)


def threshold_table(
    y: np.ndarray, s: np.ndarray, grid: Sequence[float] = GRID, counts: SampleSize | None = None
) -> list[CalibrationRow]:
    """One row per threshold: a pair is called "same" when its score >= threshold.

    Precision with no accepted pair is reported as 1.0: no false acceptances were made. Each row's `fpr_upper` /
    `fnr_upper` is the bound for `counts` (default: `sample_size(y)`); the rates themselves are over all scores.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, np.float64)
    n = counts if counts is not None else sample_size(y)
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
                fpr_upper=rate_upper(fp / neg, n.impostor),
                fnr_upper=rate_upper(fn / pos, n.genuine),
            )
        )
    return rows
