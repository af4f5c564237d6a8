"""service/serving/wording.py: the verdict in words. Each state names what it is, the score it rests on and the
point(s) it was read at; rates are "1 in N" with bounds rounded so they still hold; an unreachable strict point says
why nothing is consistent; "not consistent" says how many of the artist's own paintings score that low."""

from __future__ import annotations

import math

import pytest

from contract.operating import CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT, OperatingPoint, ThreeWay
from service.serving.wording import Subject, one_in, summary

STRICT = OperatingPoint(0.81, 0.004, 0.52, 0.0093, 0.6, "max_fpr<=0.01")
EQUAL = OperatingPoint(0.55, 0.12, 0.12, 0.15, 0.2, "equal error rate")
TW = ThreeWay(STRICT, EQUAL)


@pytest.mark.parametrize(
    ("rate", "bound", "words"),
    [(0.0, False, "none"), (0.04, False, "1 in 25"), (0.0093, True, "1 in 107"), (0.0093, False, "1 in 108"),
     (0.5, False, "50 %"), (0.504, True, "51 %")],
)  # fmt: skip
def test_one_in_rounds_a_bound_so_that_it_still_holds(rate: float, bound: bool, words: str) -> None:
    assert one_in(rate, bound) == words
    if bound and 0 < rate < 0.5:
        assert 1 / int(words.split()[-1]) >= rate  # "at most 1 in N" is true of the bound


def test_each_state_says_what_it_is_and_where_the_score_stands() -> None:
    subject = Subject.portfolio("Johannes Vermeer", 3)
    for score, state in ((0.9, CONSISTENT), (0.7, INCONCLUSIVE), (0.3, NOT_CONSISTENT)):
        assert TW.verdict(score) == state
        text = summary(state, TW, score, subject)
        assert f"{score:.3f}" in text and "Johannes Vermeer's 3 reference works" in text
    consistent = summary(CONSISTENT, TW, 0.9, subject)
    assert consistent.startswith("Consistent with") and "0.810" in consistent
    assert f"at most 1 in {math.floor(1 / STRICT.fpr_upper)} paintings by other artists" in consistent
    assert "not proof" in consistent
    between = summary(INCONCLUSIVE, TW, 0.7, subject)
    assert between.startswith("Inconclusive") and "0.550" in between and "0.810" in between
    below = summary(NOT_CONSISTENT, TW, 0.3, subject)
    assert below.startswith("Not consistent") and "paintings by Johannes Vermeer" in below and "1 in 8" in below


def test_an_unreachable_strict_point_says_why_nothing_is_consistent() -> None:
    tw = ThreeWay(None, EQUAL, unreachable="too few pairs")
    assert tw.verdict(0.99) == INCONCLUSIVE
    text = summary(INCONCLUSIVE, tw, 0.99, Subject.pair())
    assert "too small to show" in text and "1 in 100 pairs by different artists" in text


def test_without_counted_pairs_the_rate_is_said_as_measured() -> None:
    tw = ThreeWay(OperatingPoint(0.8, 0.01, 0.4, None, None, "max_fpr<=0.01"), EQUAL)
    text = summary(CONSISTENT, tw, 0.85, Subject.gallery("Rembrandt"))
    assert "about 1 in 100 paintings by artists not enrolled in the calibration data" in text
    assert "closest: Rembrandt" in text and "95 %" not in text
