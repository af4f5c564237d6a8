"""Admission limit: past `max_inflight` scoring or enrolment requests in flight, the next one is shed with 503
`overloaded` + Retry-After at once, before its upload is read; other routes are not limited, and once the load
goes the service serves again.

Deterministic: `max_inflight=1`, and the one admitted request is held inside the scorer on an event until the
test lets it go. httpx's ASGI transport pulls a streamed body only when the app asks for a chunk, so a counting
generator shows exactly how much of the shed request was read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bench.pictures import painting_jpeg
from service.config import Settings
from service.main import create_app
from tests.reliability.conftest import admin, assert_error_envelope, documented_codes, make_settings

SHED_METRIC = 'brushprint_http_requests_total{method="POST",route="/v1/compare",status="503"}'


def _counting_body(consumed: list[int], chunks: int = 20, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            consumed.append(size)
            yield b"\0" * size

    return body()


def _pic(i: int) -> tuple[str, bytes, str]:
    return (f"p{i}.jpg", painting_jpeg(3, i), "image/jpeg")


def test_max_inflight_sheds_before_the_body_is_read_and_recovers(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    app = create_app(make_settings(model_dir, tmp_path / "data", max_inflight=1))
    codes = documented_codes(app.openapi())
    multipart = {"content-type": "multipart/form-data; boundary=brushprint"}

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            scorer = app.state.runtime.scorer
            entered, release = asyncio.Event(), asyncio.Event()
            real_identify = scorer.identify

            async def held_identify(image: bytes, k: int = 5):  # type: ignore[no-untyped-def]
                entered.set()
                await release.wait()
                return await real_identify(image, k)

            monkeypatch.setattr(scorer, "identify", held_identify)
            # the routes ask the runtime for their collection's scorer: this one, for the default collection
            monkeypatch.setattr(app.state.runtime, "scorer_for", lambda _collection: scorer)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=admin()) as c:
                r = await c.post("/v1/artists", json={"id": "adm", "name": "Admission"})
                assert r.status_code == 201, r.text
                first = asyncio.create_task(c.post("/v1/identify", files={"image": _pic(0)}, data={"k": "1"}))
                await asyncio.wait_for(entered.wait(), 60)
                assert app.state.admission.in_flight == 1
                assert "brushprint_admitted_in_flight 1.0" in (await c.get("/metrics")).text

                # every limited route is shed at once, and the shed request's body is never read
                for path in ("/v1/compare", "/v1/verify", "/v1/identify", "/v1/artists/adm/works"):
                    consumed: list[int] = []
                    t0 = time.perf_counter()
                    r = await c.post(path, content=_counting_body(consumed), headers=multipart)
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 503, f"{path}: {r.status_code} {r.text[:200]}"
                    assert assert_error_envelope(r, codes, path) == "overloaded"
                    # a streamed body of unknown length is not drained: the connection is closed
                    assert r.headers["Retry-After"] == "1" and r.headers["Connection"] == "close"
                    assert sum(consumed) == 0, f"{path}: {sum(consumed)} bytes of a shed request were read"
                    assert elapsed < 2.0, f"{path}: shedding took {elapsed:.2f} s"
                # a whole, valid request is shed as well, not only a streamed one
                files = {"image_a": _pic(1), "image_b": _pic(2)}
                r = await c.post("/v1/compare", files=files)
                assert r.status_code == 503 and "connection" not in r.headers  # small: drained, kept open
                # the key is checked first: without one it is 401, full or not
                r = await c.post("/v1/compare", files=files, headers={"X-API-Key": ""})
                assert r.status_code == 401
                # routes outside the limit are served while it is full
                assert (await c.get("/v1/artists")).status_code == 200
                assert (await c.get("/healthz")).status_code == 200
                assert app.state.admission.in_flight == 1

                release.set()
                r = await asyncio.wait_for(first, 60)
                assert r.status_code == 200, r.text
                assert app.state.admission.in_flight == 0
                # served again once the load is gone, the route that was held included
                assert (await c.post("/v1/compare", files=files)).status_code == 200
                assert (await c.post("/v1/identify", files={"image": _pic(3)})).status_code == 200
                assert app.state.admission.in_flight == 0
                text = (await c.get("/metrics")).text
                assert "brushprint_admitted_in_flight 0.0" in text
                assert f"{SHED_METRIC} 2.0" in text  # the sheds are counted under their route, not <unmatched>

    asyncio.run(scenario())


def test_a_failing_request_gives_its_slot_back(model_dir: Path, tmp_path: Path):
    app = create_app(make_settings(model_dir, tmp_path / "data", max_inflight=1))

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=admin()) as c:
                for _ in range(3):  # a refused upload (422: not an image) must not leak its slot
                    r = await c.post("/v1/identify", files={"image": ("x.jpg", b"not an image", "image/jpeg")})
                    assert r.status_code in (415, 422), r.text
                assert app.state.admission.in_flight == 0
                r = await c.post("/v1/identify", files={"image": _pic(4)})
                assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_max_inflight_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHPRINT_MAX_INFLIGHT", "3")
    assert Settings().max_inflight == 3
    monkeypatch.delenv("BRUSHPRINT_MAX_INFLIGHT")
    assert Settings().max_inflight == 64
    with pytest.raises(ValueError):
        Settings(max_inflight=0)


def test_admission_is_declared_on_every_upload_route() -> None:
    """`@admitted` on the route is what the limit reads (no list kept elsewhere): every route that takes an upload
    carries it, and no other does — a new upload route without it fails here."""
    from fastapi import params
    from fastapi.routing import APIRoute

    from service.api import ROUTERS
    from service.api.middleware import API_PREFIX, is_admitted

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    uploads = {
        (method, r.path)
        for r in routes
        for method in r.methods
        if any(isinstance(p.field_info, params.File) for p in r.dependant.body_params)
    }
    admitted = {(method, r.path) for r in routes for method in r.methods if is_admitted(r)}
    assert (
        admitted
        == uploads
        == {
            ("POST", f"{API_PREFIX}/compare"),
            ("POST", f"{API_PREFIX}/verify"),
            ("POST", f"{API_PREFIX}/identify"),
            ("POST", f"{API_PREFIX}/artists/{{artist_id}}/works"),
        }
    )
