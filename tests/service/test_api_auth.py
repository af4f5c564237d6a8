"""Access control over HTTP: every /v1 route (enumerated from the app, so a new route cannot slip through)
refuses no key, a wrong key, a revoked key and the wrong scope; keys over HTTP; the per-key rate limit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.apitools import ADMIN, ADMIN_KEY, OPERATOR_KEY, error_code, new_key, one, pair, running

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
# scoring, and the strictness presets the page offers for it (its required `route` is what is missing below)
VERIFY_ROUTES = {("POST", "/v1/compare"), ("POST", "/v1/verify"), ("POST", "/v1/identify"), ("GET", "/v1/strictness")}


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("auth")) as c:
        yield c


def v1_routes(client: TestClient) -> list[tuple[str, str]]:
    # From the OpenAPI schema: FastAPI ≥ 0.16x keeps included routers nested in `app.routes`.
    paths = client.app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in sorted(paths.items()) if p.startswith("/v1") for m in sorted(ops)]


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None):
    url = path.replace("{artist_id}", "someone").replace("{work_id}", "w1").replace("{key_ref}", "nokey")
    url = url.replace("{collection_id}", "nowhere")
    return client.request(method, url, headers=headers or {})


def test_every_route_is_either_open_or_under_v1(client: TestClient) -> None:
    schema = client.app.openapi()
    assert set(schema["paths"]) - OPEN_PATHS == {p for _, p in v1_routes(client)}
    # 14, the reference-work picture (GET …/works/{work_id}/image), PATCH of an artist and of a work, the
    # strictness presets (GET /v1/strictness), 5 for collections (operator scope), GET /v1/me and GET /v1/archive
    assert len(v1_routes(client)) == 25
    for method, path in v1_routes(client):
        assert schema["paths"][path][method.lower()]["security"] == [{"ApiKey": []}], (method, path)
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }


def test_every_v1_route_refuses_missing_wrong_and_revoked_keys(client: TestClient) -> None:
    revoked = new_key(client, "revoked-one", "admin")
    assert client.delete("/v1/keys/revoked-one", headers=ADMIN).status_code == 200
    wrong = ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y")
    for method, path in v1_routes(client):
        r = call(client, method, path)
        assert (r.status_code, error_code(r)) == (401, "missing_api_key"), (method, path)
        for bad in (wrong, revoked, "bp_short", "x" * 1000, ""):
            r = call(client, method, path, {"X-API-Key": bad})
            want = "missing_api_key" if bad == "" else "invalid_api_key"
            assert (r.status_code, error_code(r)) == (401, want), (method, path, bad[:8])


def test_verify_scope_reaches_scoring_routes_only(client: TestClient) -> None:
    verifier = {"X-API-Key": new_key(client, "verifier", "verify")}
    for method, path in v1_routes(client):
        r = call(client, method, path, verifier)
        if (method, path) in VERIFY_ROUTES:
            # past authentication: what is missing now is the body
            assert r.status_code == 422, (method, path, r.text)
        elif path == "/v1/me":  # any key reads who it is
            assert r.status_code == 200 and r.json()["scope"] == "verify", r.text
        elif path.endswith("/works/{work_id}/image"):
            # the pictures of the works a verdict names: past the scope check, the placeholder artist is unknown
            assert (r.status_code, error_code(r)) == (404, "unknown_artist"), (method, path)
        else:
            assert (r.status_code, error_code(r)) == (403, "insufficient_scope"), (method, path)


def test_operator_scope_reaches_collection_routes_only(client: TestClient) -> None:
    """An operator key manages collections and sees inside none: every other /v1 route is 403 for it, and an
    admin key is 403 on every collection route."""
    r = client.post("/v1/keys", json={"name": "op", "scope": "operator"}, headers=ADMIN)
    assert (r.status_code, error_code(r)) == (422, "invalid_request")  # an admin key cannot make one
    for method, path in v1_routes(client):
        if path.startswith("/v1/collections"):
            r = call(client, method, path, ADMIN)
            assert (r.status_code, error_code(r)) == (403, "insufficient_scope"), (method, path)
    operator = {"X-API-Key": OPERATOR_KEY}
    for method, path in v1_routes(client):
        r = call(client, method, path, operator)
        if path == "/v1/me":
            assert r.status_code == 200 and r.json()["collection"] is None, r.text
        elif not path.startswith("/v1/collections"):
            assert (r.status_code, error_code(r)) == (403, "insufficient_scope"), (method, path)
        elif "{collection_id}" in path:
            # past the scope check: the placeholder collection is unknown (or, for a new key, the body is missing)
            assert r.status_code in (404, 422), (method, path, r.text)
        else:
            assert r.status_code in (200, 422), (method, path, r.text)


def test_admin_scope_may_verify(client: TestClient) -> None:
    assert client.post("/v1/compare", files=pair(1, 2), headers=ADMIN).status_code == 200


def test_open_routes_need_no_key(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_keys_over_http(client: TestClient) -> None:
    r = client.post("/v1/keys", json={"name": "gallery-x", "scope": "verify"}, headers=ADMIN)
    assert r.status_code == 201
    created = r.json()
    key = created["key"]
    assert key.startswith("bp_") and len(key) > 40 and key.startswith(created["prefix"])
    assert created["scope"] == "verify" and created["active"] is True

    listed = client.get("/v1/keys", headers=ADMIN)
    assert listed.status_code == 200
    assert key not in listed.text  # never shown again
    mine = [k for k in listed.json() if k["name"] == "gallery-x"]
    assert len(mine) == 1 and "key" not in mine[0] and mine[0]["prefix"] == created["prefix"]

    assert client.post("/v1/compare", files=pair(1, 2), headers={"X-API-Key": key}).status_code == 200
    r = client.post("/v1/keys", json={"name": "gallery-x", "scope": "admin"}, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "key_name_taken"

    r = client.delete(f"/v1/keys/{created['id']}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at"]
    r = client.post("/v1/compare", files=pair(1, 2), headers={"X-API-Key": key})
    assert (r.status_code, error_code(r)) == (401, "invalid_api_key")
    # a revoked name may be issued again
    assert client.post("/v1/keys", json={"name": "gallery-x", "scope": "verify"}, headers=ADMIN).status_code == 201
    active = client.get("/v1/keys", params={"include_revoked": False}, headers=ADMIN).json()
    assert all(k["active"] for k in active)

    r = client.delete("/v1/keys/no-such-key", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_key"
    for bad in ({"name": "x", "scope": "root"}, {"name": "", "scope": "verify"}, {"name": "a b", "scope": "verify"}):
        r = client.post("/v1/keys", json=bad, headers=ADMIN)
        assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_keys_never_reach_the_logs(model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running(model_dir, tmp_path) as c:
        key = new_key(c, "logged", "verify")
        c.post("/v1/compare", files=pair(1, 2), headers={"X-API-Key": key})
        c.post("/v1/compare", files=pair(1, 2), headers={"X-API-Key": key + "x"})
    text = caplog.text + "".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert key not in text and ADMIN_KEY not in text
    access = [r for r in caplog.records if r.name == "service.access" and r.fields["route"] == "/v1/compare"]
    assert [r.fields["key_name"] for r in access][-2:] == ["logged", None]


def test_rate_limit_answers_429_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path, rate_limit_per_minute=6, rate_limit_burst=3) as c:
        other = {"X-API-Key": new_key(c, "other", "verify")}  # the admin key's first token
        codes = [c.get("/v1/artists", headers=ADMIN).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.get("/v1/artists", headers=ADMIN)
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 10  # one token per 10 s
        # buckets are per key
        assert c.post("/v1/identify", files=one(1), headers=other).status_code == 200
        # refused requests before authentication cost nobody a token
        assert c.get("/v1/artists").status_code == 401
