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

from pydantic import BeforeValidator

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_BOOLEANS = {"true": True, "false": False}
MAX_LENGTH = 40  # longer text is no number any field takes (and int() of 10⁴ digits costs)


def parse_integer(value: object) -> object:
    """The integer a text spells, or ValueError; anything not text is left to the field's type."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_LENGTH or not _INTEGER.fullmatch(value):
        raise ValueError("must be an integer in plain decimal digits (no '+', spaces, leading zeros, point, exponent)")
    return int(value)


def parse_number(value: object) -> object:
    """The number a text spells as JSON would, or ValueError; anything not text is left to the field's type."""
    if not isinstance(value, str):
        return value
    if len(value) > MAX_LENGTH or not _NUMBER.fullmatch(value):
        raise ValueError("must be a number as JSON writes one, e.g. 0.05 or 1e-3 (no '+', spaces or leading zeros)")
    return float(value)


def parse_boolean(value: object) -> object:
    if not isinstance(value, str):
        return value
    if value not in _BOOLEANS:
        raise ValueError("must be true or false")
    return _BOOLEANS[value]


INTEGER = BeforeValidator(parse_integer)
NUMBER = BeforeValidator(parse_number)
BOOLEAN = BeforeValidator(parse_boolean)
