"""A verdict in words a dealer reads without statistics: the one wording the API's `summary`, the page and the
client all show. Pure functions of the verdict's points (contract.operating `ThreeWay`) and what was judged.

Rates are said as "1 in N": an upper bound is rounded so that it still holds (N rounded down), a point estimate
to the nearest N. Covered by tests/service/test_wording.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contract.operating import CONSISTENT, INCONCLUSIVE, STRICT_MAX_FPR, ThreeWay


@dataclass(frozen=True)
class Subject:
    """What a verdict is about, in words: `claim` completes "consistent with …"; `others` are the impostors the
    false-match rate counts, `own` the genuine ones the miss rate counts."""

    claim: str
    others: str
    own: str

    @classmethod
    def pair(cls) -> Subject:
        return cls("one artist having painted both", "pairs by different artists", "pairs by one artist")

    @classmethod
    def portfolio(cls, name: str, works: int) -> Subject:
        return cls(
            f"{name}'s {works} reference work{'s' if works != 1 else ''}",
            "paintings by other artists",
            f"paintings by {name}",
        )

    @classmethod
    def gallery(cls, name: str) -> Subject:
        return cls(
            f"one of the enrolled artists (closest: {name})",
            "paintings by artists not enrolled",
            "enrolled artists' paintings",
        )


def one_in(rate: float, bound: bool = False) -> str:
    """ "1 in 25" (an upper bound: N rounded down, so it still holds), "30 %" past one in two, "none" for 0."""
    if rate <= 0:
        return "none"
    if rate >= 0.5:
        return f"{math.ceil(rate * 100) if bound else round(rate * 100)} %"
    return f"1 in {math.floor(1 / rate) if bound else round(1 / rate)}"


def _reached_by(tw: ThreeWay, subject: Subject) -> str:
    strict = tw.strict
    assert strict is not None
    if strict.fpr_upper is not None:
        return f"at most {one_in(strict.fpr_upper, bound=True)} {subject.others} (with 95 % confidence)"
    return f"about {one_in(strict.fpr)} {subject.others} in the calibration data"


def summary(verdict: str, tw: ThreeWay, score: float, subject: Subject) -> str:
    """The verdict in plain words: what it is, which score it rests on, and what it would take to say more."""
    low = tw.equal_error.threshold
    if verdict == CONSISTENT:
        strict = tw.strict
        assert strict is not None
        return (
            f"Consistent with {subject.claim}: the score {score:.3f} reaches {strict.threshold:.3f}, a score "
            f"reached by {_reached_by(tw, subject)}. Consistent is not proof of authorship."
        )
    if verdict == INCONCLUSIVE:
        if tw.strict is None:
            return (
                f"Inconclusive: the score {score:.3f} is at or above {low:.3f}, so it does not rule out "
                f"{subject.claim}, but the calibration behind this answer is too small to show that fewer than "
                f"{one_in(STRICT_MAX_FPR)} {subject.others} score so high, so nothing is called consistent here. "
                "Treat it as unresolved: a better photograph or more reference works may decide it."
            )
        return (
            f"Inconclusive about {subject.claim}: the score {score:.3f} lies between {low:.3f}, below which it "
            f"would be called not consistent, and {tw.strict.threshold:.3f}, from which it would be called "
            "consistent. Treat it as unresolved: a better photograph or more reference works may decide it."
        )
    missed = tw.equal_error.fnr
    return (
        f"Not consistent with {subject.claim}: the score {score:.3f} is below {low:.3f}; "
        f"{'at most about ' + one_in(missed) if missed > 0 else 'none'} of the {subject.own} in the calibration "
        "data score that low."
    )
