"""Fixtures for the reliability and security tests: the service app built from real settings, a real model.

`--fuzz-long` scales the fuzzers up (`make fuzz`); without it they run a bounded pass inside `make test`.
The `fuzz` marker tags the fuzzers so `make fuzz` can select them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.pictures import painting_jpeg
from service.config import Settings
from service.main import create_app

# The session model fixture of the service tests: the shipped model when present, else the ONNX dev model.
from tests.service.conftest import model_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "reliability-admin-key-0123456789"
API_KEY_HEADER = "X-API-Key"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="brushprint reliability: run the fuzzers with many more examples (make fuzz)",
    )


_OPTIONS = {"fuzz_long": False}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: fuzzing of the HTTP API (bounded in make test, long in make fuzz)")
    _OPTIONS["fuzz_long"] = bool(config.getoption("--fuzz-long", default=False))


def fuzz_long_requested() -> bool:
    """`--fuzz-long`, readable at collection time (schemathesis needs its example budget before any fixture)."""
    return _OPTIONS["fuzz_long"]


@pytest.fixture(scope="session")
def fuzz_long() -> bool:
    return fuzz_long_requested()


def make_settings(model_path: Path, data_dir: Path, **overrides: Any) -> Settings:
    """Settings as an operator would write them; explicit values win over any BRUSHPRINT_* in the environment."""
    values: dict[str, Any] = {
        "model_dir": model_path,
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'brushprint.db'}",
        "admin_key": ADMIN_KEY,
        "rate_limit_per_minute": 0,  # the fuzzers send far more than a dealer would; 429 is tested on its own
        "max_upload_bytes": 2 * 1024 * 1024,
        "max_request_bytes": 8 * 1024 * 1024,
        "batch_max_wait_ms": 1.0,
        "log_level": "INFO",
    }
    values.update(overrides)
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(**values)


@contextmanager
def running_app(settings: Settings) -> Iterator[tuple[FastAPI, TestClient]]:
    """The app with its lifespan started (model loaded, admin key bootstrapped), and a client bound to it."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {API_KEY_HEADER: key}


def _readme_codes() -> set[str]:
    """Codes in the README's error table: rows `| 4xx | `code`, … |` (the contract for humans)."""
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    rows = [line for line in text.splitlines() if re.match(r"^\|\s*[45]\d\d\s*\|", line)]
    return {code for row in rows for code in re.findall(r"`([a-z][a-z0-9_]*)`", row)}


README_CODES = _readme_codes()


def documented_codes(openapi: dict, with_readme: bool = True) -> set[str]:
    """Every error code the API documents: backticked `snake_case` words in its OpenAPI error responses'
    descriptions, plus (by default) the README's error table."""
    codes: set[str] = set(README_CODES) if with_readme else set()
    for path in openapi.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict):
                continue
            for status, response in op.get("responses", {}).items():
                if str(status).startswith(("4", "5")):
                    codes.update(re.findall(r"`([a-z][a-z0-9_]*)`", response.get("description", "")))
    return codes


def documented_statuses(openapi: dict, method: str, path_template: str) -> set[int]:
    op = openapi["paths"][path_template][method.lower()]
    return {int(s) for s in op.get("responses", {}) if str(s).isdigit()}


def assert_error_envelope(response: Any, codes: set[str], context: str = "") -> str:
    """A rejection is `{"error": {"code", "message"}}` with a documented code; returns the code."""
    content_type = response.headers.get("content-type", "")
    if isinstance(content_type, list):  # schemathesis' Response keeps every header as a list
        content_type = content_type[0] if content_type else ""
    assert content_type.startswith("application/json"), f"{context}: {content_type}"
    body = response.json()
    assert set(body) == {"error"}, f"{context}: {body}"
    err = body["error"]
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), f"{context}: {body}"
    assert err["code"] in codes, f"{context}: undocumented error code {err['code']!r} ({sorted(codes)})"
    return err["code"]


def enrol_portfolio(client: TestClient, artist_id: str, artist: int, n: int = 3, start: int = 0) -> list[str]:
    r = client.post("/v1/artists", json={"id": artist_id, "name": f"Artist {artist}"}, headers=admin())
    assert r.status_code == 201, r.text
    files = [("image", (f"w{i}.jpg", painting_jpeg(artist, i), "image/jpeg")) for i in range(start, start + n)]
    r = client.post(f"/v1/artists/{artist_id}/works", files=files, headers=admin())
    assert r.status_code == 201, r.text
    return [w["id"] for w in r.json()["works"]]
