"""A work's catalogue entry as callers give it: bounded, printable free text per field of
service/storage/schema.py `CATALOGUE` (title, date, medium, dimensions, inventory number, photo credit, notes).

`checked(values)` is the one validation behind enrolment and edits: unknown fields, non-text values, control
characters (line breaks only in `notes`) and overlong values are 422 `invalid_catalogue`, naming the field; text is
stripped, and empty text clears the field (None). `per_work(fields, n)` splits enrolment's repeated form fields
(the i-th value of a field belongs to the i-th image). No HTTP here. Covered by tests/service/test_catalogue.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.errors import Invalid
from service.storage.schema import CATALOGUE

MULTILINE = frozenset({"notes"})


def _bad(message: str) -> Invalid:
    return Invalid("invalid_catalogue", message)


def checked(values: Mapping[str, object]) -> dict[str, str | None]:
    """`values` (a subset of the catalogue's fields) as stored: stripped text, or None to clear."""
    unknown = sorted(set(values) - set(CATALOGUE))
    if unknown:
        raise _bad(f"unknown catalogue field(s) {', '.join(unknown)}; the fields are {', '.join(CATALOGUE)}")
    out: dict[str, str | None] = {}
    for name, value in values.items():
        if value is None:
            out[name] = None
            continue
        if not isinstance(value, str):
            raise _bad(f"{name} must be text, not {type(value).__name__}")
        text = value.strip()
        allowed = "\n\t" if name in MULTILINE else ""
        if any(not (ch.isprintable() or ch in allowed) for ch in text):
            raise _bad(f"{name} must be printable text{' (line breaks allowed)' if allowed else ''}")
        if len(text) > CATALOGUE[name]:
            raise _bad(f"{name} is {len(text)} characters; at most {CATALOGUE[name]}")
        out[name] = text or None
    return out


def per_work(fields: Mapping[str, Sequence[str] | None], n: int) -> list[dict[str, str | None]]:
    """Enrolment's catalogue form fields → one checked entry per image: a field given at all is given once per
    image, in the images' order (an empty value leaves that work's field unset)."""
    entries: list[dict[str, str | None]] = [{} for _ in range(n)]
    for name, values in fields.items():
        if values is None:
            continue
        if len(values) != n:
            raise _bad(
                f"{name} is given {len(values)} times for {n} image(s): give each catalogue field once per image, "
                "in the images' order (an empty value for a work without one), or not at all"
            )
        for entry, value in zip(entries, values, strict=True):
            entry[name] = value
    return [{k: v for k, v in checked(e).items() if v is not None} for e in entries]
