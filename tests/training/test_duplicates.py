"""training/evaluation/duplicates.py on synthetic vectors (tests/training/test_robustness.py's corpus: every
condition moves a painting along its own camera direction, harsher conditions further): the threshold is the
highest different-painting cosine any held-out projection gave, rounded up, so no different pair reaches it; the
copies found at it fall with the condition's harshness; the pairs counted are distinct; the report says so."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contract.operating import rate_upper
from tests.training.test_robustness import SEVERITY, corpus
from training.evaluation import duplicates
from training.evaluation.robustness import Recipe

RECIPE = Recipe(dim=12, subspace=20)


@pytest.fixture(scope="module")
def judged() -> tuple[dict, np.ndarray]:
    copies, _, labels = corpus(seed=3)
    return duplicates.judge(copies, labels, RECIPE, repeats=3, seed=1), labels


def test_no_different_pair_reaches_the_threshold(judged) -> None:
    j, labels = judged
    n = len(labels)
    assert 0 < j["pairs"] <= n * (n - 1) // 2  # distinct pairs over the repeats, never counted twice
    result = duplicates.same_work(j, "synthetic", 3)
    assert result.threshold == math.ceil(j["max_different"] * 100 + 1e-9) / 100 > j["max_different"]
    assert result.false_same == 0 and result.different_pairs == j["pairs"]
    assert set(result.per_condition) == set(SEVERITY)
    every = np.concatenate(list(j["copies"].values()))
    assert result.copies == len(every) and result.found == pytest.approx(float(np.mean(every >= result.threshold)))


def test_harsher_conditions_leave_fewer_copies_found(judged) -> None:
    j, _ = judged
    mean = {c: float(np.mean(v)) for c, v in j["copies"].items()}
    assert mean["jpeg_q90"] > mean["blur_1.5"]  # the mildest condition's copies stay closer than the harshest's
    assert all(float(v.min()) >= -1.0 and float(v.max()) <= 1.0 + 1e-6 for v in j["copies"].values())


def test_the_report_states_the_bound_from_the_pairs_counted(judged) -> None:
    j, _ = judged
    result = duplicates.same_work(j, "synthetic", 3)
    text = duplicates.report(result)
    assert f"threshold {result.threshold:.2f}" in text and f"0 of {result.different_pairs}" in text
    assert f"{rate_upper(0.0, result.different_pairs):.5f}" in text
    assert all(c in text for c in SEVERITY)
