"""From scores to decisions: strictness → operating point on a calibration table, portfolio table choice.

The operating-point rule itself is contract.operating's (`operating_point`), the one training checks its claims
with; this module validates what a caller asked for and turns "unreachable" into the caller's error.
Pure functions over tables; no model, no I/O. Caller errors are domain errors (service/errors.py).
Covered by tests/service/test_scoring.py.

Semantics (README and API docs repeat them):
- a pair/portfolio *matches* when `score >= threshold`;
- `threshold=t`: expected rates are linearly interpolated between the two calibration rows bracketing t
  (outside the table, the end row), with their 95 % upper bounds;
- `max_fpr=f`: the smallest calibrated threshold whose FPR upper bound ≤ f (the point estimate when the table
  does not record its counts); none → `operating_point_unreachable`, saying what the table's pairs can show;
- `min_precision=p`: the smallest calibrated threshold whose precision lower bound ≥ p;
- nothing: the default point (the card's recommended threshold, or an equal-error point), rates as for `threshold`.
The three-way verdict (`judge`, contract.operating `three_way`) takes the strictness asked for as its strict point
(nothing asked: `max_fpr=0.01`, and when the table cannot show that, no strict point: never "consistent") and the
default point as its equal-error point.
Values that make no sense as a strictness are refused with a hint: `max_fpr` outside (0, 0.5] ("0.01 means
1 %"; above one half, "no match" would err less), `min_precision` outside (0, 1), `threshold` outside [0, 1].
Portfolio (verify) decisions use the table of the largest simulated portfolio size k ≤ the real portfolio's
size (the smallest k when the portfolio is smaller than all of them; the pair table when the card has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from contract.card import Calibration
from contract.operating import OperatingPoint, Table, ThreeWay, Unreachable, operating_point, three_way
from service.errors import BadRequest, Invalid

T = TypeVar("T")


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
            if isinstance(value, bool) or not isinstance(value, int | float) or not _in_range(name, float(value)):
                code = "invalid_threshold" if name == "threshold" else "invalid_operating_point"
                raise Invalid(code, range_message(name, value))
            # NaN fails every range check; infinities too


_RANGES = {
    "threshold": "a score between 0 and 1",
    "max_fpr": "a fraction above 0 and at most 0.5 (0.01 means 1 % false matches; above one half, calling every "
    "pair a non-match errs less)",
    "min_precision": "a fraction above 0 and below 1 (0.99 means 99 % of matches right)",
}


def _in_range(name: str, v: float) -> bool:
    if name == "threshold":
        return 0.0 <= v <= 1.0
    if name == "max_fpr":
        return 0.0 < v <= 0.5
    return 0.0 < v < 1.0


def range_message(name: str, value: object) -> str:
    """Why `value` makes no sense as `name`, with a hint where it reads as a percentage (1..100)."""
    hint = ""
    if isinstance(value, int | float) and not isinstance(value, bool) and name != "threshold" and 1 <= value <= 100:
        hint = f"; did you mean {name}={value / 100:g} ({value:g} %)?"
    return f"{name} must be {_RANGES[name]}, not {value!r}{hint}"


def _asked(rule: Callable[..., T], table: Table, strictness: Strictness, default: tuple[float, str]) -> T:
    """`rule` (contract.operating) on `table` at the strictness asked for; unreachable: 422
    `operating_point_unreachable`."""
    try:
        return rule(
            table,
            threshold=strictness.threshold,
            max_fpr=strictness.max_fpr,
            min_precision=strictness.min_precision,
            default=default,
        )
    except Unreachable as e:
        raise Invalid("operating_point_unreachable", str(e)) from e


def resolve(table: Table, strictness: Strictness, default: tuple[float, str]) -> OperatingPoint:
    """The operating point `strictness` asks for on `table` (contract.operating); `default` = (threshold, rule)."""
    return _asked(operating_point, table, strictness, default)


def judge(table: Table, strictness: Strictness, default: tuple[float, str]) -> ThreeWay:
    """The verdict's two points on `table` (contract.operating `three_way`): the strict one is the strictness asked
    for (unreachable: 422 `operating_point_unreachable`), else max_fpr 0.01 (unreachable: none, and why)."""
    return _asked(three_way, table, strictness, default)


@dataclass(frozen=True)
class Preset:
    """A strictness a page or client may offer, and what the calibration makes of it: its operating point, or
    (`point` None) why the calibration's pairs cannot show it."""

    id: str
    label: str
    field: str  # "max_fpr" or "min_precision"
    value: float
    point: OperatingPoint | None
    why: str = ""


# the strictness presets offered, strictest first within each kind
PRESETS: tuple[tuple[str, str, str, float], ...] = (
    ("fpr1", "At most 1 % false matches", "max_fpr", 0.01),
    ("fpr5", "At most 5 % false matches", "max_fpr", 0.05),
    ("fpr10", "At most 10 % false matches", "max_fpr", 0.10),
    ("prec99", "At least 99 % of matches right", "min_precision", 0.99),
    ("prec95", "At least 95 % of matches right", "min_precision", 0.95),
)


def presets(table: Table) -> list[Preset]:
    """Each of `PRESETS` on `table`, by the same rule a request with that field is answered by (so a preset
    marked reachable is one a request can ask for without 422 `operating_point_unreachable`)."""
    out = []
    for pid, label, name, value in PRESETS:
        try:
            point = (
                operating_point(table, max_fpr=value)
                if name == "max_fpr"
                else operating_point(table, min_precision=value)
            )
            out.append(Preset(pid, label, name, value, point))
        except Unreachable as e:
            out.append(Preset(pid, label, name, value, None, str(e)))
    return out


def portfolio_table(calibration: Calibration, portfolio_size: int) -> tuple[Table, int | None]:
    """The calibration table for a portfolio of this size and its k (None: the pair table, no portfolio ones)."""
    if not calibration.portfolio:
        return Table.pair_of(calibration), None
    ordered = sorted(calibration.portfolio, key=lambda p: p.k)
    fitting = [p for p in ordered if p.k <= portfolio_size]
    chosen = fitting[-1] if fitting else ordered[0]
    return Table.portfolio_of(chosen), chosen.k
