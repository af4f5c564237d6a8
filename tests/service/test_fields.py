"""Numbers and booleans that arrive as text are read by one parser (service/api/fields.py), tested against a table
of spellings; every numeric and boolean form field and query parameter of the API uses it (found from the OpenAPI
schema), and a refused spelling is a 422 with the field's own code that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.fields import parse_boolean, parse_integer, parse_number
from tests.service.apitools import ADMIN, enrol, error_code, one, pair, running

# text: (as an integer field reads it, as a number field reads it); None: refused
SPELLINGS: dict[str, tuple[int | None, float | None]] = {
    "3": (3, 3.0),
    "0": (0, 0.0),
    "-2": (-2, -2.0),
    "1234567890123": (1234567890123, 1234567890123.0),
    "0.05": (None, 0.05),
    "3.0": (None, 3.0),
    "1e-3": (None, 0.001),
    "2E+1": (None, 20.0),
    "3e0": (None, 3.0),
    "+3": (None, None),
    " 3": (None, None),
    "3 ": (None, None),
    "3\n": (None, None),
    "\t3": (None, None),
    "03": (None, None),
    "00.5": (None, None),
    "-03": (None, None),
    ".5": (None, None),
    "5.": (None, None),
    "1_0": (None, None),
    "0x3": (None, None),
    "0b1": (None, None),
    "３": (None, None),  # fullwidth digit: int() reads it
    "٣": (None, None),  # Arabic-Indic digit: int() reads it
    "1e": (None, None),
    "e3": (None, None),
    "--3": (None, None),
    "": (None, None),
    "nan": (None, None),
    "NaN": (None, None),
    "inf": (None, None),
    "-Infinity": (None, None),
    "3,5": (None, None),
    "1" * 41: (None, None),  # longer than any number a field takes
}


@pytest.mark.parametrize("text", list(SPELLINGS))
def test_one_parser_reads_numbers_as_json_spells_them(text: str) -> None:
    as_integer, as_number = SPELLINGS[text]
    for parse, expected in ((parse_integer, as_integer), (parse_number, as_number)):
        if expected is None:
            with pytest.raises(ValueError):
                parse(text)
        else:
            got = parse(text)
            assert got == expected and type(got) is type(expected), (parse.__name__, text, got)


def test_booleans_are_true_or_false() -> None:
    assert (parse_boolean("true"), parse_boolean("false")) == (True, False)
    for text in ("True", "FALSE", "1", "0", "yes", "on", "t", " true", "true ", ""):
        with pytest.raises(ValueError):
            parse_boolean(text)
    assert parse_integer(7) == 7 and parse_number(0.5) == 0.5  # typed values are the field type's business


# ---- over HTTP: every numeric and boolean field ---------------------------------------------------------------
# (method, path, field): (kind, the code a refusal carries, a spelling it accepts)
FIELDS: dict[tuple[str, str, str], tuple[str, str, str]] = {
    **{
        ("post", route, name): ("number", code, value)
        for route in ("/v1/compare", "/v1/verify")
        for name, code, value in (
            ("threshold", "invalid_threshold", "0.5"),
            ("max_fpr", "invalid_operating_point", "0.5"),
            ("min_precision", "invalid_operating_point", "0.05"),
        )
    },
    ("post", "/v1/compare", "evidence"): ("integer", "invalid_evidence", "2"),
    ("post", "/v1/verify", "evidence"): ("integer", "invalid_evidence", "2"),
    ("post", "/v1/identify", "k"): ("integer", "invalid_k", "3"),
    ("get", "/v1/artists/{artist_id}/works/{work_id}/image", "max_side"): ("integer", "invalid_max_side", "32"),
    ("get", "/v1/artists", "offset"): ("integer", "invalid_pagination", "0"),
    ("get", "/v1/artists", "limit"): ("integer", "invalid_pagination", "10"),
    ("get", "/v1/audit", "offset"): ("integer", "invalid_pagination", "0"),
    ("get", "/v1/audit", "limit"): ("integer", "invalid_pagination", "10"),
    ("get", "/v1/keys", "include_revoked"): ("boolean", "invalid_request", "false"),
    ("post", "/v1/artists/{artist_id}/works", "allow_duplicate"): ("boolean", "invalid_request", "false"),
}
# spellings of the accepted value that each kind refuses
REFUSED = {
    "integer": lambda v: [
        f"{v}.0",
        f"+{v}",
        f" {v}",
        f"{v} ",
        f"0{v}",
        f"{v}e0",
        f"{v}\n",
        chr(0xFF10 + int(v[0])) + v[1:],
    ],
    "number": lambda v: [f"+{v}", f" {v}", f"{v} ", f"0{v}", v.lstrip("0"), f"{v}\n", "nan", "inf", "0x1p-1"],
    "boolean": lambda v: [v.title(), "0", "no", f" {v}"],
}


def _schema_kind(schema: dict[str, Any]) -> str | None:
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])} - {"null"}
    return next(iter(kinds)) if len(kinds) == 1 and kinds <= {"integer", "number", "boolean"} else None


def _field_schemas(openapi: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every query parameter and multipart form field of the schema: (method, path, name) → its schema."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                out[(method, path, p["name"])] = p["schema"]
            form = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form:
                ref = form["schema"]["$ref"].rsplit("/", 1)[-1]
                for name, schema in openapi["components"]["schemas"][ref]["properties"].items():
                    out[(method, path, name)] = schema
    return out


def test_every_numeric_or_boolean_field_is_in_the_table(client: TestClient) -> None:
    """A field added without the parser (or without its row here) fails this test."""
    found = {f: kind for f, schema in _field_schemas(client.app.openapi()).items() if (kind := _schema_kind(schema))}
    assert found == {f: kind for f, (kind, _, _) in FIELDS.items()}


def test_the_schema_keeps_every_numeric_fields_bounds(client: TestClient) -> None:
    """The parser sits after `Form(...)`/`Query(...)` in each field's `Annotated[...]`: put before it, FastAPI
    writes the bounds as unknown `ge`/`le` keys instead of `minimum`/`maximum`, and clients and schemathesis lose
    them (the validation itself still holds)."""
    schemas = _field_schemas(client.app.openapi())
    for f, (kind, _, _) in FIELDS.items():
        if kind == "boolean":
            continue
        schema = schemas[f]
        typed = next(s for s in schema.get("anyOf", [schema]) if s.get("type") == kind)
        assert "minimum" in typed and "maximum" in typed, (f, schema)
    for f, schema in schemas.items():
        assert not {"ge", "le", "gt", "lt"} & set(schema), (f, schema)


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("fields")) as c:
        works = enrol(c, "vermeer", [1, 2])
        c.app.state.work_id = works[0]["id"]
        yield c


_FRESH = iter(range(100, 10_000))  # enrolment's pictures: a new one each time, lest it be a duplicate


def _send(client: TestClient, method: str, path: str, name: str, value: str | None):  # type: ignore[no-untyped-def]
    path = path.replace("{artist_id}", "vermeer").replace("{work_id}", client.app.state.work_id)
    if method == "get":
        return client.get(path, params={name: value}, headers=ADMIN)
    files = pair(1, 2) if path.endswith("compare") else one(next(_FRESH) if path.endswith("/works") else 3)
    data = {
        **({name: value} if value is not None else {}),
        **({"artist_id": "vermeer"} if path.endswith("verify") else {}),
    }
    return client.post(path, files=files, data=data, headers=ADMIN)


@pytest.mark.parametrize("field", list(FIELDS), ids=lambda f: f"{f[1]}:{f[2]}")
def test_each_field_refuses_every_other_spelling_and_changes_nothing(client: TestClient, field) -> None:
    method, path, name = field
    kind, code, good = FIELDS[field]
    audit = client.get("/v1/audit", headers=ADMIN).json()["total"]
    works = len(client.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"])
    for bad in REFUSED[kind](good):
        r = _send(client, method, path, name, bad)
        assert r.status_code == 422 and error_code(r) == code, (bad, r.status_code, r.text)
        assert name in r.json()["error"]["message"], r.text
    assert client.get("/v1/audit", headers=ADMIN).json()["total"] == audit  # nothing decided, nothing logged
    assert len(client.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"]) == works  # nor enrolled
    r = _send(client, method, path, name, good)
    assert r.status_code == (201 if path.endswith("/works") else 200), (good, r.text)


@pytest.mark.parametrize("field", list(FIELDS), ids=lambda f: f"{f[1]}:{f[2]}")
def test_an_empty_value_is_absent_in_a_form_and_refused_in_a_query(client: TestClient, field) -> None:
    """An empty form field counts as not sent (an HTML form sends an empty box so; FastAPI reads it as absent), as
    the README says; an empty query parameter is a spelling like any other, refused with the field's code."""
    method, path, name = field
    kind, code, _ = FIELDS[field]
    r = _send(client, method, path, name, "")
    if method == "get":
        assert r.status_code == 422 and error_code(r) == code, r.text
    else:
        absent = _send(client, method, path, name, None)
        if path.endswith("/works"):  # two enrolments of two pictures: the same answer but for the works made
            assert r.status_code == absent.status_code == 201, (r.text, absent.text)
            return
        assert r.status_code == absent.status_code == 200, (r.text, absent.text)
        assert {**r.json(), "request_id": None} == {**absent.json(), "request_id": None}
