"""Operations and plumbing: /healthz, /readyz, /metrics, OpenAPI, the error envelope for framework errors
(404, 405, 413, 500), request ids and the structured access log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from service.logging import JsonFormatter
from service.serving.batching import Overloaded
from tests.service.apitools import ADMIN, OPERATOR, enrol, error_code, one, pair, running


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("ops")) as c:
        yield c


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_reports_model_and_store(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True
    assert body["checks"]["model"] == client.app.state.runtime.model_id
    assert body["checks"]["store"] is True and body["checks"]["reindex_required"] is False
    assert body["checks"]["providers"] == ["CPUExecutionProvider"] and body["checks"]["batch_max_size"] == 16


def test_readyz_counts_only_for_an_operator(client: TestClient) -> None:
    """The deployment's figures (summed over every collection) would tell one dealer how large the others are:
    anonymous callers and collection keys get none; an operator key gets them."""
    enrol(client, "counted", [1, 2])
    for headers in ({}, ADMIN, {"X-API-Key": "not-a-key-at-all-0123"}):
        checks = client.get("/readyz", headers=headers).json()["checks"]
        assert "references" not in checks and "works_missing_embedding" not in checks, headers
    checks = client.get("/readyz", headers=OPERATOR).json()["checks"]
    assert checks["references"] == 2 and checks["works_missing_embedding"] == 0


def test_readyz_is_503_while_a_reindex_is_pending(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.app.state.runtime, "missing", lambda: 3)
    r = client.get("/readyz")
    assert r.status_code == 503 and error_code(r) == "not_ready"
    assert "reindex" in r.json()["error"]["message"] and "3 works" not in r.json()["error"]["message"]


def test_readyz_is_503_when_the_store_is_unreachable(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.app.state.runtime.bundle.store, "ping", lambda: False)
    r = client.get("/readyz")
    assert r.status_code == 503 and error_code(r) == "not_ready"


def test_readyz_before_start_is_503(model_dir: Path, tmp_path: Path) -> None:
    from service.main import create_app
    from tests.service.apitools import make_settings

    app = create_app(make_settings(model_dir, tmp_path))
    r = TestClient(app).get("/readyz")  # no `with`: the lifespan (model loading) has not run
    assert r.status_code == 503 and error_code(r) == "not_ready"


def test_metrics_count_requests_batches_and_the_model(client: TestClient) -> None:
    enrol(client, "metrics-artist", [7, 8])
    assert client.post("/v1/compare", files=pair(1, 2), headers=ADMIN).status_code == 200
    client.get("/v1/artists/nobody", headers=ADMIN)
    text = client.get("/metrics").text
    assert 'brushprint_http_requests_total{method="POST",route="/v1/compare",status="200"}' in text
    # labelled by template, not by the raw path
    assert 'route="/v1/artists/{artist_id}",status="404"' in text
    assert "nobody" not in text
    assert "brushprint_http_request_duration_seconds_bucket" in text
    assert 'brushprint_batch_size_count{batcher="backbone"}' in text
    assert "brushprint_batch_queue_depth 0.0" in text
    # batch_max_size unset: the CPU default, as the batcher runs it
    assert "brushprint_batch_max_size 16.0" in text
    assert "brushprint_references" not in text  # no figure of the collections' contents on an open endpoint
    model_id = client.app.state.runtime.model_id
    assert 'brushprint_model_info{backbone="' in text and f'model_id="{model_id}"' in text


def test_unknown_paths_get_one_label(client: TestClient) -> None:
    client.get("/no/such/path/12345")
    text = client.get("/metrics").text
    assert 'route="<unmatched>"' in text and "12345" not in text


def test_each_app_has_its_own_registry(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path / "a") as a, running(model_dir, tmp_path / "b") as b:
        a.get("/healthz")
        a.get("/healthz")
        b.get("/healthz")
        count = 'brushprint_http_requests_total{method="GET",route="/healthz",status="200"}'
        assert f"{count} 2.0" in a.get("/metrics").text
        assert f"{count} 1.0" in b.get("/metrics").text


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_every_405_names_exactly_the_methods_served(client: TestClient) -> None:
    """On every route of the app — API, page, docs — each method is either served (anything but 405) or refused
    with 405 whose Allow lists exactly the methods that were served there: the page's `POST /` and
    `PUT /web/app.js` included."""
    paths = {rc.path for rc in iter_route_contexts(client.app.routes) if rc.path}
    assert {"/", "/web/{name}", "/docs", "/v1/artists/{artist_id}/works/{work_id}/image"} <= paths
    for template in sorted(paths):
        path = re.sub(r"\{[^}]+\}", "x", template).replace("/web/x", "/web/app.js")
        answers = {m: client.request(m, path, headers=ADMIN) for m in METHODS}
        served = sorted(m for m, r in answers.items() if r.status_code != 405)
        assert served, template
        for m, r in answers.items():
            if r.status_code == 405:
                assert m == "HEAD" or error_code(r) == "method_not_allowed", (m, template)  # HEAD: no body
                assert r.headers["Allow"] == ", ".join(served), (m, template, served)


def test_framework_errors_use_the_envelope(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.put("/healthz")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    assert r.headers["Allow"] == "GET"
    # Allow lists every method of the resource, though GET and POST are separate routes
    r = client.options("/v1/artists", headers=ADMIN)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    r = client.put("/v1/artists/monet/works/w1", headers=ADMIN)
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE, PATCH"
    r = client.get("/v1/compare", headers=ADMIN)
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    r = client.post("/v1/compare", content=b"garbage", headers={**ADMIN, "content-type": "multipart/form-data"})
    assert r.status_code == 400 and error_code(r) == "malformed_body"
    r = client.post("/v1/artists", content=b'{"id": "a"}', headers={**ADMIN, "content-type": "text/plain"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"
    assert r.json()["error"]["message"].startswith("request body: ")


def test_request_too_large_by_content_length(client: TestClient) -> None:
    limit = client.app.state.settings.max_request_bytes
    r = client.post("/v1/compare", content=b"x", headers={**ADMIN, "content-length": str(limit + 1)})
    assert r.status_code == 413 and error_code(r) == "request_too_large"
    r = client.post("/v1/compare", content=b"x", headers={**ADMIN, "content-length": "12abc"})
    assert r.status_code == 400 and error_code(r) == "invalid_request"


def test_request_too_large_while_streaming(model_dir: Path, tmp_path: Path) -> None:
    # no Content-Length (chunked): the limit is enforced as the body arrives
    with running(model_dir, tmp_path, max_upload_bytes=10_000, max_request_bytes=20_000) as c:
        chunks = (b"-" * 4096 for _ in range(10))
        headers = {**ADMIN, "content-type": "multipart/form-data; boundary=xyz"}
        r = c.post("/v1/compare", content=chunks, headers=headers)
        assert r.status_code == 413 and error_code(r) == "request_too_large"


def test_unexpected_errors_are_500_without_details(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path) as c:

        async def boom(*_a: object, **_k: object) -> None:
            raise RuntimeError("secret internals /etc/passwd")

        c.app.state.runtime.scorer_for = lambda _collection: SimpleNamespace(compare=boom)
        r = c.post("/v1/compare", files=pair(1, 2), headers=ADMIN)
        assert r.status_code == 500 and error_code(r) == "internal_error"
        assert "secret" not in r.text and "Traceback" not in r.text
        assert r.headers["X-Request-ID"] in r.json()["error"]["message"]
        assert 'route="/v1/compare",status="500"' in c.get("/metrics").text


def test_overloaded_is_503_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path) as c:

        async def busy(*_a: object, **_k: object) -> None:
            raise Overloaded("256 requests are already waiting for the model", retry_after=0.2)

        c.app.state.runtime.scorer_for = lambda _collection: SimpleNamespace(identify=busy)
        r = c.post("/v1/identify", files=one(1), headers=ADMIN)
        assert r.status_code == 503 and error_code(r) == "overloaded"
        assert r.headers["Retry-After"] == "1"


def test_request_ids(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "caller-chosen.id-1"})
    assert r.headers["X-Request-ID"] == "caller-chosen.id-1"
    r = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["X-Request-ID"] != "bad id\twith spaces" and len(r.headers["X-Request-ID"]) == 32
    assert client.get("/healthz").headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]


def test_access_log_is_structured(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.access")
    r = client.get("/v1/artists/nobody", headers={**ADMIN, "X-Request-ID": "trace-me"})
    assert r.status_code == 404
    record = next(
        rec for rec in caplog.records if rec.name == "service.access" and rec.fields["request_id"] == "trace-me"
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "service.access"
    assert line["route"] == "/v1/artists/{artist_id}" and line["path"] == "/v1/artists/nobody"
    assert line["status"] == 404 and line["method"] == "GET" and line["duration_ms"] >= 0
    assert line["key_name"] == "bootstrap-admin"


def test_openapi_documents_errors_and_security(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "brushprint"
    compare = schema["paths"]["/v1/compare"]["post"]
    assert compare["summary"] and compare["description"]
    for status in ("401", "403", "413", "415", "422", "429", "503"):
        ref = compare["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody"), status
    assert "security" not in schema["paths"]["/healthz"]["get"]
    body = schema["components"]["schemas"]
    form = next(v for k, v in body.items() if k.startswith("Body_compare"))
    assert form["required"] == ["image_a", "image_b"]
    assert form["properties"]["threshold"]["anyOf"][0]["maximum"] == 1.0
    # the reference pages load their assets from the service (fastapi-offline's files), never from a CDN
    for page, asset in (("/docs", "/docs/assets/swagger-ui-bundle.js"), ("/redoc", "/docs/assets/redoc.standalone.js")):
        r = client.get(page)
        assert r.status_code == 200 and asset in r.text and "cdn" not in r.text.lower()
        assert "default-src 'self'" in r.headers["content-security-policy"]
        js = client.get(asset)
        assert (
            js.status_code == 200 and js.headers["content-type"].startswith("text/javascript") and len(js.content) > 1e5
        )
    assert client.get("/docs/assets/../main.py").status_code == 404
    assert client.get("/docs/assets/nope.js").json()["error"]["code"] == "not_found"


def test_a_broken_model_dir_fails_at_start(model_dir: Path, tmp_path: Path) -> None:
    from service.serving.model import ModelError

    with pytest.raises(ModelError, match=r"model\.json"), running(tmp_path / "no-model", tmp_path / "data"):
        pass
