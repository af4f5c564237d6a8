"""Every error code the service can answer with is documented, and every documented code exists.

The fuzzers check that each rejection they provoke carries a documented code; this closes the gap for codes
no fuzzer reached, by reading them out of the service's source (`Invalid("code", …)`, `code="…"`,
status → code tables) and the contract's image errors (`InvalidImage("code", …)`), and comparing with the
README's error table and the OpenAPI response descriptions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import Settings
from service.main import create_app
from tests.reliability.conftest import README_CODES, documented_codes

ROOT = Path(__file__).resolve().parents[2]
_STATUS_CODE = re.compile(r'\b([45]\d\d)\s*[,:]\s*"([a-z][a-z0-9_]*)"')
# the kinds of service/errors.py, raised as `Invalid("code", …)`
_KIND_CODE = re.compile(
    r"\b(?:BadRequest|Unauthorized|Forbidden|NotFound|Conflict|TooLarge|Invalid|RateLimited|Unavailable)"
    r'\(\s*"([a-z][a-z0-9_]+)"'
)
_ASSIGNED_CODE = re.compile(r'\bcode\s*=\s*"([a-z][a-z0-9_]+)"')
_IMAGE_CODE = re.compile(r'\b(?:ImageTooLarge|UnsupportedImage|InvalidImage)\(\s*"([a-z][a-z0-9_]+)"')


def codes_in_source() -> dict[str, set[str]]:
    """code → files that raise it."""
    found: dict[str, set[str]] = {}
    for f in sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "contract").rglob("*.py")]):
        text = f.read_text()
        codes = [c for _, c in _STATUS_CODE.findall(text)] + _KIND_CODE.findall(text) + _ASSIGNED_CODE.findall(text)
        codes += _IMAGE_CODE.findall(text)
        for code in codes:
            found.setdefault(code, set()).add(str(f.relative_to(ROOT)))
    return found


SOURCE = codes_in_source()
OPENAPI_CODES = documented_codes(
    create_app(Settings(model_dir=Path("unused-model"), data_dir=Path("unused-data"), admin_key=None)).openapi(),
    with_readme=False,
)


def test_the_scan_finds_the_codes_it_should():
    # a broken regex would make the tests below vacuous
    for code in ["missing_api_key", "unsupported_format", "image_too_many_pixels", "overloaded", "rate_limited"]:
        assert code in SOURCE, code
    assert len(SOURCE) >= 25
    assert len(README_CODES) >= 25


# Answers of the router itself, for URLs or methods that match no operation: the README documents them, and no
# operation's OpenAPI entry can.
ROUTING = {"not_found", "method_not_allowed", "unsupported_media_type"}


@pytest.mark.parametrize("code", sorted(SOURCE))
def test_every_code_in_the_source_is_documented(code: str):
    where = ", ".join(sorted(SOURCE[code]))
    if code not in ROUTING:
        assert code in OPENAPI_CODES, f"`{code}` (raised in {where}) is not in any OpenAPI response description"
    if code != "internal_error":  # a 5xx is a bug, not part of the contract table
        assert code in README_CODES, f"`{code}` (raised in {where}) is missing from the README error table"


@pytest.mark.parametrize("code", sorted(README_CODES))
def test_every_documented_code_is_raised_somewhere(code: str):
    known = set(SOURCE) | {"invalid_operating_point"}  # chosen per field in service/api/errors._STRICTNESS_CODES
    assert code in known, f"the README documents `{code}` but no code in service/ answers with it"
