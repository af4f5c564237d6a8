"""The one parser of the values that arrive as text — every numeric or boolean form field and query parameter.

A number is spelled as JSON spells one: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, ASCII digits only; a field
the docs call an integer takes the integer part of that grammar alone. So `3` is an integer and `0.05`, `1e-3`
are numbers, while `3.0` (for an integer), `+3`, ` 3`, `3 `, `03`, `.5`, `5.`, `1_0`, `0x3`, `３`, `nan` and
`inf` — all of which Python's `int()`/`float()` or pydantic's lax mode would take — are refused. A boolean is
`true` or `false`. A value spelled otherwise is refused as one out of range is: 422 with the field's own code
(service/api/errors.py). Use them in a parameter's `Annotated[...]` after `Form(...)` / `Query(...)`:
`Annotated[int, Query(ge=1), INTEGER]` — placed before it, FastAPI keeps the bounds out of the OpenAPI schema's
`minimum`/`maximum` (they still hold). Covered by tests/service/test_fields.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BeforeValidator

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False}
MAX_LENGTH = 40  # longer text is no number any field takes (and int() of 10⁴ digits costs)


def _spelled(pattern: re.Pattern[str], convert: Callable[[str], object], rule: str) -> Callable[[object], object]:
    """A parser: the value a text spells by `pattern`, or ValueError saying `rule`; anything not text is left to the
    field's type."""

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        if len(value) > MAX_LENGTH or not pattern.fullmatch(value):
            raise ValueError(rule)
        return convert(value)

    return parse


parse_integer = _spelled(
    _INTEGER, int, "must be an integer in plain decimal digits (no '+', spaces, leading zeros, point, exponent)"
)
parse_number = _spelled(
    _NUMBER, float, "must be a number as JSON writes one, e.g. 0.05 or 1e-3 (no '+', spaces or leading zeros)"
)


def parse_boolean(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value not in _BOOLEANS:
        raise ValueError("must be true or false")
    return _BOOLEANS[value]


INTEGER = BeforeValidator(parse_integer)
NUMBER = BeforeValidator(parse_number)
BOOLEAN = BeforeValidator(parse_boolean)
