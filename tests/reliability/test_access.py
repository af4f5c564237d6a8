"""Access control, proved route by route from the app's own OpenAPI schema.

For every `/v1` operation: no key, a wrong key and a revoked key get 401; a `verify` key gets 403 on admin
routes and passes the gate on scoring routes; an admin key passes everywhere. Keys never appear in a response
or a log line after the one response that creates them, nor in the database. The key check ends in
`hmac.compare_digest` (a spy proves the code path, rather than a flaky timing measurement).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.pictures import painting_jpeg
from service.config import Settings
from service.main import create_app
from tests.reliability.conftest import (
    ADMIN_KEY,
    admin,
    assert_error_envelope,
    documented_codes,
    enrol_portfolio,
    make_settings,
    running_app,
)

ROOT = Path(__file__).resolve().parents[2]
# scoring, and the strictness presets offered for it: past the gate, a verify key's empty request is a 422
SCORING = {"/v1/compare", "/v1/verify", "/v1/identify", "/v1/strictness"}
# reads a `verify` key may make besides scoring: the pictures of the works a verdict names
VERIFY_READS = {"/v1/artists/{artist_id}/works/{work_id}/image"}
ARTIST = "acl-artist"
OPERATOR_KEY = "acl-operator-key-0123456789abcdef"
# an operator key manages collections and reaches nothing else; no collection's key reaches these
OPERATOR_ONLY = "/v1/collections"
# every active key, of any scope, reads who it is (the page asks it first)
ANY_SCOPE = {"/v1/me"}

# The operations are read from an app that was never started: building it loads nothing.
OPENAPI = create_app(Settings(model_dir=Path("unused-model"), data_dir=Path("unused-data"), admin_key=None)).openapi()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in OPENAPI["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)
V1 = [op for op in OPERATIONS if op[1].startswith("/v1")]
# the schema's own routes are not in the schema: add them by hand
PUBLIC = [op for op in OPERATIONS if not op[1].startswith("/v1")] + [("GET", "/openapi.json"), ("GET", "/docs")]
PUBLIC += [("GET", "/"), ("GET", "/web/app.js"), ("GET", "/web/style.css")]  # the page (not in the schema)


class Env:
    def __init__(self, app: FastAPI, client: TestClient, data_dir: Path, keys: dict[str, str]):
        self.app, self.client, self.data_dir, self.keys = app, client, data_dir, keys
        self.work_id = ""


@pytest.fixture(scope="module")
def env(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("access-data")
    with running_app(make_settings(model_dir, data_dir, operator_key=OPERATOR_KEY)) as (app, client):
        keys = {"admin": ADMIN_KEY, "operator": OPERATOR_KEY}
        for name, scope in [("acl-verify", "verify"), ("acl-admin2", "admin"), ("acl-revoked", "verify")]:
            r = client.post("/v1/keys", json={"name": name, "scope": scope}, headers=admin())
            assert r.status_code == 201, r.text
            keys[name] = r.json()["key"]
        r = client.delete("/v1/keys/acl-revoked", headers=admin())
        assert r.status_code == 200 and r.json()["active"] is False
        e = Env(app, client, data_dir, keys)
        e.work_id = enrol_portfolio(client, ARTIST, artist=2, n=2)[0]
        yield e


def _url(method: str, path: str, e: Env) -> str:
    # DELETEs that get past the gate must not destroy the fixture's artist: they aim at ids that do not exist
    artist, work = ("acl-nobody", "no-such-work") if method == "DELETE" else (ARTIST, e.work_id)
    url = path.replace("{artist_id}", artist).replace("{work_id}", work).replace("{key_ref}", "0")
    return url.replace("{collection_id}", "acl-nowhere")


def _send(e: Env, method: str, path: str, key: str | None):  # type: ignore[no-untyped-def]
    headers = {} if key is None else {"X-API-Key": key}
    # No body: the gate must answer before the body is looked at.
    return e.client.request(method, _url(method, path, e), headers=headers)


def _tampered(key: str) -> str:
    """The same key with its last character changed: almost all of it matches."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def test_the_schema_lists_every_route_and_marks_v1_as_keyed():
    paths = {p for _, p in OPERATIONS}
    for must in [*SCORING, "/v1/artists", "/v1/artists/{artist_id}/works", "/v1/audit", "/v1/keys"]:
        assert must in paths
    assert len(V1) >= 12
    for method, path in V1:
        op = OPENAPI["paths"][path][method.lower()]
        assert op.get("security"), f"{method} {path} does not declare the API key in the schema"
        assert "401" in op["responses"], f"{method} {path}"
        assert ("403" in op["responses"]) == (path not in ANY_SCOPE), f"{method} {path}"


@pytest.mark.parametrize(("method", "path"), V1, ids=[f"{m} {p}" for m, p in V1])
def test_every_v1_route_refuses_missing_wrong_and_revoked_keys(env: Env, method: str, path: str):
    codes = documented_codes(OPENAPI)
    cases = {
        "no key": (None, "missing_api_key"),
        "empty key": ("", "missing_api_key"),
        "wrong key": ("bp_" + "x" * 43, "invalid_api_key"),
        "admin key with last character changed": (_tampered(ADMIN_KEY), "invalid_api_key"),
        "verify key with last character changed": (_tampered(env.keys["acl-verify"]), "invalid_api_key"),
        "admin key prefix": (ADMIN_KEY[:20], "invalid_api_key"),
        "revoked key": (env.keys["acl-revoked"], "invalid_api_key"),
        "oversized key": ("k" * 5000, "invalid_api_key"),
    }
    for what, (key, code) in cases.items():
        r = _send(env, method, path, key)
        assert r.status_code == 401, f"{method} {path} with {what}: {r.status_code} {r.text[:200]}"
        assert assert_error_envelope(r, codes, f"{method} {path} {what}") == code


# Bodies that FastAPI would refuse while parsing (400/422) or the size check from its Content-Length (413/400):
# with a valid key they get exactly that, without one they must get 401, since the key is checked first.
MALFORMED = {
    "garbage multipart": ("POST", "/v1/compare", b"garbage", {"content-type": "multipart/form-data"}, 400),
    "truncated multipart": (
        "POST",
        f"/v1/artists/{ARTIST}/works",
        b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\nabc",
        {"content-type": "multipart/form-data; boundary=x"},
        422,
    ),
    "unparsable JSON": ("POST", "/v1/artists", b'{"id": "a", ', {"content-type": "application/json"}, 422),
    "JSON as text/plain": ("POST", "/v1/keys", b'{"name": "x"}', {"content-type": "text/plain"}, 422),
    "declared body over the limit": ("POST", "/v1/verify", b"x", {"content-length": str(10**12)}, 413),
    "non-numeric Content-Length": ("POST", "/v1/identify", b"x", {"content-length": "12abc"}, 400),
}


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_keyless_malformed_bodies_get_401_not_a_parse_error(env: Env, what: str):
    method, path, body, headers, with_key = MALFORMED[what]
    codes = documented_codes(OPENAPI)
    r = env.client.request(method, path, content=body, headers={**headers, **admin()})
    assert r.status_code == with_key, f"{what} with a key: {r.status_code} {r.text[:200]}"  # really malformed
    for key, code in ((None, "missing_api_key"), ("bp_" + "x" * 43, "invalid_api_key")):
        sent = headers if key is None else {**headers, "X-API-Key": key}
        r = env.client.request(method, path, content=body, headers=sent)
        assert r.status_code == 401, f"{what}, key {key!r}: {r.status_code} {r.text[:200]}"
        assert assert_error_envelope(r, codes, what) == code


def _counting_body(consumed: list[int], chunks: int, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A streamed request body that records every chunk the server pulls from it."""
    chunk = b"\0" * size

    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            consumed.append(size)
            yield chunk

    return body()


def test_a_keyless_50_mb_upload_is_refused_without_reading_it(env: Env):
    """httpx's ASGI transport hands the app a chunk only when the app asks for one: what the generator gave up
    is exactly what the server read."""
    multipart = {"content-type": "multipart/form-data; boundary=brushprint"}

    async def scenario() -> dict[str, tuple[int, str, str, int]]:
        out: dict[str, tuple[int, str, str, int]] = {}
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            for name, extra in [
                ("chunked, no key", {}),
                ("declared 50 MB, no key", {"content-length": str(50 * 1024 * 1024)}),
                ("chunked, revoked key", {"X-API-Key": env.keys["acl-revoked"]}),
                ("chunked, valid key", admin()),  # the control: the same body is read when the key is good
            ]:
                consumed: list[int] = []
                chunks = 3 if name == "chunked, valid key" else 50
                body = _counting_body(consumed, chunks)
                r = await c.post("/v1/compare", content=body, headers={**multipart, **extra})
                code = r.json()["error"]["code"]
                out[name] = (r.status_code, code, r.headers.get("connection", ""), sum(consumed))
            # a small declared body is left for the server to drain, so the connection stays usable
            r = await c.post("/v1/compare", content=b"x" * 1000, headers=multipart)
            out["1 kB, no key"] = (r.status_code, r.json()["error"]["code"], r.headers.get("connection", ""), 0)
        return out

    results = asyncio.run(scenario())
    for name in ("chunked, no key", "declared 50 MB, no key"):
        assert results[name] == (401, "missing_api_key", "close", 0), (name, results[name])
    assert results["chunked, revoked key"] == (401, "invalid_api_key", "close", 0), results
    assert results["1 kB, no key"] == (401, "missing_api_key", "", 0), results
    status, _, _, read = results["chunked, valid key"]
    assert status == 400 and read > 0, results  # the counter does see reads, so the zeros above mean something


@pytest.mark.parametrize(("method", "path"), V1, ids=[f"{m} {p}" for m, p in V1])
def test_scope_is_enforced_on_every_v1_route(env: Env, method: str, path: str):
    codes = documented_codes(OPENAPI)
    r = _send(env, method, path, env.keys["acl-verify"])
    operator = _send(env, method, path, env.keys["operator"])
    if path in ANY_SCOPE:
        for name in ("acl-verify", "admin", "acl-admin2", "operator"):
            r = _send(env, method, path, env.keys[name])
            assert r.status_code == 200, f"{method} {path} with {name}: {r.status_code} {r.text[:200]}"
        return
    if path.startswith(OPERATOR_ONLY):
        for name in ("acl-verify", "admin", "acl-admin2"):
            r = _send(env, method, path, env.keys[name])
            assert r.status_code == 403, f"{method} {path} with {name}: {r.status_code} {r.text[:200]}"
            assert assert_error_envelope(r, codes) == "insufficient_scope"
        assert operator.status_code not in (401, 403), f"{method} {path}: {operator.status_code} {operator.text}"
        return
    assert operator.status_code == 403, f"{method} {path} with the operator key: {operator.status_code}"
    assert assert_error_envelope(operator, codes) == "insufficient_scope"
    if path in SCORING:
        # past the gate: the missing body is what is wrong now
        assert r.status_code not in (401, 403), f"{method} {path}: {r.status_code} {r.text[:200]}"
        assert r.status_code == 422
    elif path in VERIFY_READS:
        assert r.status_code == 200, f"{method} {path} with a verify key: {r.status_code} {r.text[:200]}"
    else:
        assert r.status_code == 403, f"{method} {path} with a verify key: {r.status_code} {r.text[:200]}"
        assert assert_error_envelope(r, codes) == "insufficient_scope"
    for name in ("admin", "acl-admin2"):
        r = _send(env, method, path, env.keys[name])
        assert r.status_code not in (401, 403), f"{method} {path} with {name}: {r.status_code} {r.text[:200]}"


@pytest.mark.parametrize(("method", "path"), PUBLIC, ids=[f"{m} {p}" for m, p in PUBLIC])
def test_operations_routes_need_no_key(env: Env, method: str, path: str):
    r = _send(env, method, path, None)
    assert r.status_code == 200, f"{method} {path}: {r.status_code}"


def test_a_verify_key_can_score_but_not_enrol(env: Env):
    verify = {"X-API-Key": env.keys["acl-verify"]}
    pic = ("q.jpg", painting_jpeg(2, 7), "image/jpeg")
    r = env.client.post("/v1/verify", files={"image": pic}, data={"artist_id": ARTIST}, headers=verify)
    assert r.status_code == 200, r.text
    before = env.client.get(f"/v1/artists/{ARTIST}/works", headers=admin()).json()
    r = env.client.post(f"/v1/artists/{ARTIST}/works", files={"image": pic}, headers=verify)
    assert r.status_code == 403
    assert env.client.get(f"/v1/artists/{ARTIST}/works", headers=admin()).json() == before


def test_revocation_takes_effect_at_once(env: Env):
    r = env.client.post("/v1/keys", json={"name": "acl-short-lived", "scope": "verify"}, headers=admin())
    key = r.json()["key"]
    pic = ("q.jpg", painting_jpeg(2, 8), "image/jpeg")
    call = {"files": {"image": pic}, "data": {"k": "1"}, "headers": {"X-API-Key": key}}
    assert env.client.post("/v1/identify", **call).status_code == 200
    assert env.client.delete("/v1/keys/acl-short-lived", headers=admin()).status_code == 200
    r = env.client.post("/v1/identify", **call)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_keys_never_leak_after_creation(env: Env, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture):
    """Drive every route with every key, creation included, then search every body, header and log line."""
    caplog.set_level(logging.DEBUG)
    r = env.client.post("/v1/keys", json={"name": "acl-leak-probe", "scope": "admin"}, headers=admin())
    assert r.status_code == 201
    fresh = r.json()["key"]
    assert r.json()["prefix"] == fresh[: len(r.json()["prefix"])] and len(r.json()["prefix"]) < len(fresh) // 2
    secrets_ = [*env.keys.values(), fresh]
    seen: list[str] = []
    for key in secrets_:
        for method, path in OPERATIONS:
            resp = _send(env, method, path, key)
            seen.append(resp.text)
            seen.extend(f"{k}: {v}" for k, v in resp.headers.items())
    pic = ("q.jpg", painting_jpeg(2, 9), "image/jpeg")
    env.client.post("/v1/verify", files={"image": pic}, data={"artist_id": ARTIST}, headers={"X-API-Key": fresh})
    for path in ("/v1/keys", "/v1/audit", "/metrics"):
        resp = env.client.get(path, headers={"X-API-Key": fresh})
        assert resp.status_code == 200
        seen.append(resp.text)
    out, err = capfd.readouterr()
    logs = [out, err] + [f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records]
    # the capture works: the access log named the probe key (by its name) on the requests it made
    access = [r for r in caplog.records if r.name == "service.access"]
    assert any("acl-leak-probe" in str(r.__dict__) for r in access), "no access-log line captured for the probe key"
    for key in secrets_:
        for text in seen:
            assert key not in text, "an API key appears in a response after its creation"
        for line in logs:
            assert key not in line, "an API key appears in a log line"
    db = (env.data_dir / "brushprint.db").read_bytes()
    for key in secrets_:
        assert key.encode() not in db, "an API key is stored in plain text"


def test_cli_prints_a_key_once_and_lists_only_names(env: Env):
    cmd = [sys.executable, "-m", "service", "--data-dir", str(env.data_dir)]
    created = subprocess.run(
        [*cmd, "keys", "create", "--name", "acl-cli", "--scope", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert created.returncode == 0, created.stderr
    key = re.search(r"\S{40,}", created.stdout)
    assert key, created.stdout
    key_text = key.group(0)
    listed = subprocess.run(
        [*cmd, "keys", "list", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=_clean_env()
    )
    assert listed.returncode == 0, listed.stderr
    assert "acl-cli" in listed.stdout and key_text not in listed.stdout + listed.stderr
    # the running service sees the new key at once (same database), with exactly its scope
    pic = ("q.jpg", painting_jpeg(2, 10), "image/jpeg")
    assert env.client.post("/v1/identify", files={"image": pic}, headers={"X-API-Key": key_text}).status_code == 200
    assert env.client.get("/v1/artists", headers={"X-API-Key": key_text}).status_code == 403


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("BRUSHPRINT_")}


def test_key_check_ends_in_constant_time_compare(env: Env, monkeypatch: pytest.MonkeyPatch):
    """The stored digest is compared with hmac.compare_digest, for every authenticated request."""
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    r = env.client.get("/v1/artists", headers=admin())
    assert r.status_code == 200
    assert calls, "the key check did not go through hmac.compare_digest"
    from service.storage.keys import hash_key

    assert any(hash_key(ADMIN_KEY) in (a, b) for a, b in calls), "compare_digest did not see the key's digest"
    # a key that matches all but its last character is refused, and never compared as plain text
    calls.clear()
    assert env.client.get("/v1/artists", headers=admin(_tampered(ADMIN_KEY))).status_code == 401
    assert all(ADMIN_KEY not in (a, b) and _tampered(ADMIN_KEY) not in (a, b) for a, b in calls)


def test_rate_limit_answers_429_with_retry_after(model_dir: Path, tmp_path: Path):
    settings = make_settings(model_dir, tmp_path / "data", rate_limit_per_minute=6, rate_limit_burst=2)
    with running_app(settings) as (app, client):
        codes = documented_codes(app.openapi())
        r = client.post("/v1/keys", json={"name": "rl-other", "scope": "admin"}, headers=admin())
        assert r.status_code == 201  # the admin key's first token
        other = r.json()["key"]
        statuses = [client.get("/v1/artists", headers=admin()).status_code for _ in range(3)]
        assert statuses == [200, 429, 429], statuses
        r = client.get("/v1/artists", headers=admin())
        assert r.status_code == 429
        assert assert_error_envelope(r, codes) == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1
        # the budget is per key: another key is not limited by the first one's burst
        assert client.get("/v1/artists", headers=admin(other)).status_code == 200
