"""Fuzzing the HTTP API: the hostile image corpus, mutated images, and schemathesis over the OpenAPI schema.

What must hold for every request: no 5xx, no hang, and every rejection is the JSON error envelope with a code
the API documents, on a status the operation documents. A rejected enrolment changes nothing.

Bounded in `make test`; `make fuzz` (`--fuzz-long`) multiplies the mutants and the schemathesis examples.
"""

from __future__ import annotations

import io
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.pictures import painting, painting_jpeg
from service.config import Settings
from service.main import create_app
from service.storage.collections import Collections
from tests.reliability import hostile
from tests.reliability.conftest import (
    admin,
    assert_error_envelope,
    documented_codes,
    documented_statuses,
    enrol_portfolio,
    fuzz_long_requested,
    make_settings,
    running_app,
)

pytestmark = pytest.mark.fuzz

CASES = hostile.corpus()
VERIFY_ARTIST = "fuzz-verify"
ENROL_ARTIST = "fuzz-enrol"
# A bomb must be refused from its header: far below the time decoding gigapixels would take.
BOMB_SECONDS = 5.0


@pytest.fixture(scope="module")
def api(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient, dict]]:
    settings = make_settings(model_dir, tmp_path_factory.mktemp("fuzz-data"))
    with running_app(settings) as (app, client):
        enrol_portfolio(client, VERIFY_ARTIST, artist=0, n=3)
        r = client.post("/v1/artists", json={"id": ENROL_ARTIST, "name": "Enrol target"}, headers=admin())
        assert r.status_code == 201, r.text
        yield app, client, app.openapi()


def _works(client: TestClient) -> list[str]:
    r = client.get(f"/v1/artists/{ENROL_ARTIST}/works", headers=admin())
    assert r.status_code == 200, r.text
    return sorted(w["id"] for w in r.json()["works"])


def _check(
    case: hostile.Hostile, response: httpx.Response, openapi: dict, method: str, template: str, elapsed: float
) -> None:
    context = f"{case.name} → {method} {template}: {response.status_code} {response.text[:200]}"
    assert response.status_code < 500, context
    assert case.accepts(response.status_code), context
    assert response.status_code in documented_statuses(openapi, method, template), context
    if response.status_code >= 400:
        assert_error_envelope(response, documented_codes(openapi), context)
    if "bomb" in case.name:
        assert elapsed < BOMB_SECONDS, f"{context}: took {elapsed:.1f} s"


def _upload(case: hostile.Hostile) -> tuple[str, bytes, str]:
    return (case.filename, case.data, case.content_type)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_upload_on_every_image_route(api, case: hostile.Hostile):
    _, client, openapi = api
    good = ("good.jpg", painting_jpeg(5, 0), "image/jpeg")

    t0 = time.perf_counter()
    r = client.post("/v1/compare", files={"image_a": _upload(case), "image_b": good}, headers=admin())
    _check(case, r, openapi, "post", "/v1/compare", time.perf_counter() - t0)
    if r.status_code == 200:
        # the score is symmetric, so the hostile file in the other slot must give the same answer
        swapped = client.post("/v1/compare", files={"image_a": good, "image_b": _upload(case)}, headers=admin())
        assert swapped.status_code == 200
        assert swapped.json()["score"] == pytest.approx(r.json()["score"], abs=1e-5)

    t0 = time.perf_counter()
    r = client.post("/v1/verify", files={"image": _upload(case)}, data={"artist_id": VERIFY_ARTIST}, headers=admin())
    _check(case, r, openapi, "post", "/v1/verify", time.perf_counter() - t0)

    t0 = time.perf_counter()
    r = client.post("/v1/identify", files={"image": _upload(case)}, data={"k": "3"}, headers=admin())
    _check(case, r, openapi, "post", "/v1/identify", time.perf_counter() - t0)

    before = _works(client)
    t0 = time.perf_counter()
    r = client.post(f"/v1/artists/{ENROL_ARTIST}/works", files={"image": _upload(case)}, headers=admin())
    _check(case, r, openapi, "post", "/v1/artists/{artist_id}/works", time.perf_counter() - t0)
    after = _works(client)
    if r.status_code == 201:
        added = [w["id"] for w in r.json()["works"]]
        assert after == sorted(before + added) and len(added) == 1
    else:
        assert after == before, f"{case.name}: a rejected enrolment changed the portfolio"


def test_one_bad_file_rejects_the_whole_enrolment(api):
    """All or nothing: good files next to a hostile one are not enrolled either."""
    _, client, openapi = api
    before = _works(client)
    files = [
        ("image", ("ok1.jpg", painting_jpeg(6, 0), "image/jpeg")),
        ("image", ("ok2.jpg", painting_jpeg(6, 1), "image/jpeg")),
        ("image", _upload(hostile.by_name("jpeg_truncated_1357"))),
    ]
    r = client.post(f"/v1/artists/{ENROL_ARTIST}/works", files=files, headers=admin())
    assert r.status_code == 422
    assert_error_envelope(r, documented_codes(openapi))
    assert _works(client) == before


def test_oversized_upload_is_refused_before_decoding(api):
    app, client, openapi = api
    limit = app.state.settings.max_upload_bytes
    data = painting_jpeg(7, 0)
    padded = data + b"\x00" * (limit + 1 - len(data))  # trailing bytes after EOI: a valid JPEG, one byte too big
    r = client.post(
        "/v1/verify",
        files={"image": ("big.jpg", padded, "image/jpeg")},
        data={"artist_id": VERIFY_ARTIST},
        headers=admin(),
    )
    assert r.status_code == 413
    assert assert_error_envelope(r, documented_codes(openapi)) == "image_too_large"


def test_body_over_the_request_limit_is_refused(api):
    app, client, openapi = api
    limit = app.state.settings.max_request_bytes
    r = client.post(
        "/v1/compare",
        content=b"x" * (limit + 1),
        headers={**admin(), "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert r.status_code == 413
    assert assert_error_envelope(r, documented_codes(openapi)) == "request_too_large"


@pytest.mark.parametrize(
    ("route", "files", "data"),
    [
        ("/v1/compare", {"file": ("a.jpg", b"x", "image/jpeg")}, {}),
        ("/v1/compare", {"image_a": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {}),
        ("/v1/verify", {"image": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {}),
        ("/v1/verify", {"img": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {"artist_id": VERIFY_ARTIST}),
        ("/v1/identify", {"image": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {"k": "-1"}),
        ("/v1/identify", {"image": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {"k": "many"}),
        ("/v1/verify", {"image": ("a.jpg", painting_jpeg(1, 0), "image/jpeg")}, {"artist_id": "nobody"}),
        (
            "/v1/compare",
            {
                "image_a": ("a.jpg", painting_jpeg(1, 0), "image/jpeg"),
                "image_b": ("b.jpg", painting_jpeg(1, 1), "image/jpeg"),
            },
            {"threshold": "0.5", "max_fpr": "0.1"},
        ),
        (
            "/v1/compare",
            {
                "image_a": ("a.jpg", painting_jpeg(1, 0), "image/jpeg"),
                "image_b": ("b.jpg", painting_jpeg(1, 1), "image/jpeg"),
            },
            {"threshold": "1.5"},
        ),
        (
            "/v1/compare",
            {
                "image_a": ("a.jpg", painting_jpeg(1, 0), "image/jpeg"),
                "image_b": ("b.jpg", painting_jpeg(1, 1), "image/jpeg"),
            },
            {"min_precision": "nan"},
        ),
    ],
    ids=[
        "wrong-field",
        "missing-image_b",
        "missing-artist_id",
        "verify-wrong-field",
        "k-negative",
        "k-not-a-number",
        "unknown-artist",
        "two-strictness-fields",
        "threshold-out-of-range",
        "min_precision-nan",
    ],
)
def test_malformed_requests_get_documented_4xx(api, route: str, files: dict, data: dict):
    _, client, openapi = api
    r = client.post(route, files=files, data=data, headers=admin())
    assert 400 <= r.status_code < 500, r.text
    assert r.status_code in documented_statuses(openapi, "post", route)
    assert_error_envelope(r, documented_codes(openapi), f"{route} {data}")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/artists?offset=1275221371356043328618496",
        "/v1/artists?limit=100000000000000000000000000",
        "/v1/artists?offset=-1",
        "/v1/artists?limit=0",
        "/v1/artists?offset=1e3",
        "/v1/audit?offset=99999999999999999999999",
        "/v1/audit?limit=99999999999999999999999",
        "/v1/audit?since=9999-99-99",
        "/v1/audit?since=10000000000000000000",
        "/v1/keys?include_revoked=perhaps",
        "/v1/artists/%00",
        "/v1/artists/" + "a" * 5000,
        "/v1/artists/..%2F..%2Fetc%2Fpasswd/works",
    ],
)
def test_query_and_path_extremes_get_documented_4xx(api, url: str):
    """Out-of-range numbers must be refused at the edge, never reach the database as a 500 (schemathesis found one)."""
    _, client, openapi = api
    r = client.get(url, headers=admin())
    assert r.status_code < 500, f"{url}: {r.status_code} {r.text[:200]}"
    assert r.status_code in (404, 422), f"{url}: {r.status_code} {r.text[:200]}"
    # an encoded slash makes a URL that matches no route at all: the router's own 404 `not_found`
    assert_error_envelope(r, documented_codes(openapi) | {"not_found"}, url)


@pytest.mark.parametrize("ref", ["%C2%B3", "99999999999999999999999", "-1", "%00", "%20", "acl%2F..", "0x1F"])
def test_odd_key_references_are_not_found_not_a_crash(api, ref: str):
    """`"³".isdigit()` is True but `int("³")` raises: schemathesis found that one as a 500."""
    _, client, openapi = api
    r = client.delete(f"/v1/keys/{ref}", headers=admin())
    assert r.status_code in (404, 422), f"{ref}: {r.status_code} {r.text[:200]}"
    assert_error_envelope(r, documented_codes(openapi) | {"not_found"}, ref)


@pytest.mark.parametrize("route", ["/v1/artists", "/v1/keys"])
def test_unparsable_json_body_gets_a_documented_error(api, route: str):
    _, client, openapi = api
    r = client.post(route, content=b"\xff\xfe{not json", headers={**admin(), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.status_code in documented_statuses(openapi, "post", route), (
        f"{r.status_code} is not documented for {route}"
    )
    assert_error_envelope(r, documented_codes(openapi), route)


# ---------------------------------------------------------------- mutation fuzzing

SEED_FORMATS = {
    "JPEG": ("x.jpg", "image/jpeg", {"quality": 85}),
    "PNG": ("x.png", "image/png", {}),
    "GIF": ("x.gif", "image/gif", {}),
    "WEBP": ("x.webp", "image/webp", {"quality": 80}),
    "TIFF": ("x.tiff", "image/tiff", {"compression": "tiff_deflate"}),
    "BMP": ("x.bmp", "image/bmp", {}),
}


def _seed_image(fmt: str) -> bytes:
    buf = io.BytesIO()
    im = painting(3, 0, (48, 40))
    im = im.convert("P") if fmt == "GIF" else im
    im.save(buf, format=fmt, **SEED_FORMATS[fmt][2])
    return buf.getvalue()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four classic mutations: bit flips, byte runs overwritten with extremes, cuts, splices, duplicates."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        op = rng.randrange(6)
        i = rng.randrange(len(out))
        if op == 0:
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            run = rng.randint(1, 8)
            out[i : i + run] = bytes([rng.choice((0x00, 0xFF, 0x7F, 0x80))]) * run
        elif op == 2:
            del out[i : i + rng.randint(1, 64)]
        elif op == 3:
            j = rng.randrange(len(out))
            out[i:i] = out[j : j + rng.randint(1, 64)]
        elif op == 4:
            out = out[: max(1, i)]
        else:
            # header fields (sizes, offsets, counts) live in the first bytes: hit them harder
            k = rng.randrange(min(64, len(out)))
            out[k] = rng.randrange(256)
    return bytes(out)


def test_mutated_images_never_break_the_service(api, fuzz_long: bool):
    """Random damage to valid files in every accepted format; the answer is 200 or a documented 4xx."""
    _, client, openapi = api
    codes = documented_codes(openapi)
    n = 2000 if fuzz_long else 150
    rng = random.Random(20240601)
    seeds = {fmt: _seed_image(fmt) for fmt in SEED_FORMATS}
    outcomes: dict[int, int] = {}
    for i in range(n):
        fmt = rng.choice(sorted(seeds))
        filename, content_type, _ = SEED_FORMATS[fmt]
        data = mutate(seeds[fmt], rng)
        t0 = time.perf_counter()
        r = client.post(
            "/v1/verify",
            files={"image": (filename, data, content_type)},
            data={"artist_id": VERIFY_ARTIST},
            headers=admin(),
        )
        elapsed = time.perf_counter() - t0
        context = f"mutant {i} of {fmt} ({len(data)} bytes): {r.status_code} {r.text[:200]}"
        assert r.status_code in (200, 413, 415, 422), context
        if r.status_code != 200:
            assert_error_envelope(r, codes, context)
        assert elapsed < 10, f"{context}: took {elapsed:.1f} s"
        outcomes[r.status_code] = outcomes.get(r.status_code, 0) + 1
    # the mutator must actually exercise both paths, else this test proves nothing
    assert outcomes.get(200, 0) > 0 and sum(v for k, v in outcomes.items() if k != 200) > 0, outcomes


def test_pillow_is_left_in_its_safe_defaults(api):
    """Serving must not have switched off Pillow's own guards process-wide (truncated images, bomb limit)."""
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS is not None


# ---------------------------------------------------------------- schemathesis over the OpenAPI schema


# The schema is read from an app that was never started (building it loads nothing), so the operations are
# known at collection time; the requests go to a started app from a fixture. (`schemathesis.pytest.from_fixture`
# would be the lazy way, but schemathesis 4.32 sets `Node._nodeid`, which pytest 9 no longer has.)
_IDLE_APP = create_app(Settings(model_dir=Path("unused-model"), data_dir=Path("unused-data"), admin_key=None))
schema = schemathesis.openapi.from_dict(_IDLE_APP.openapi())
schema.config.generation.update(
    max_examples=300 if fuzz_long_requested() else 40,
    deterministic=not fuzz_long_requested(),
    database="none",
    # the key is sent explicitly (valid, then none), so schemathesis must not invent X-API-Key values itself
    with_security_parameters=False,
)
if not fuzz_long_requested():
    schema.config.seed = 1234

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def schema_app(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """A fresh app for schemathesis, its lifespan started the way schemathesis starts it (kept until teardown)."""
    from schemathesis.python import asgi

    app = create_app(make_settings(model_dir, tmp_path_factory.mktemp("schemathesis-data")))
    with asgi.get_client(app) as client:
        assert client.get("/readyz").status_code == 200
    yield app
    asgi.shutdown_lifespans()


def _fresh_key(app: FastAPI, path: str) -> str:
    # One key per generated case: a generated `DELETE /v1/keys/{key_ref}` may revoke any existing key (the
    # bootstrap key is id 1), and that must not silently turn the rest of the run into a wall of 401s. The
    # collection routes get an operator key (theirs alone); the others an admin key of `default`, which a
    # generated `DELETE /v1/collections/default` may have deleted: it is made again first.
    name = f"fuzz-{uuid.uuid4().hex[:12]}"
    if path.startswith("/v1/collections"):
        return app.state.keys.create(name, "operator", None)[1]
    Collections(app.state.keys.bind, app.state.settings.data_dir).ensure("default")
    return app.state.keys.create(name, "admin", "default")[1]


@pytest.mark.timeout(600)
@schema.parametrize()
def test_schemathesis_with_and_without_a_key(case, schema_app: FastAPI):
    codes = documented_codes(schema.raw_schema)
    where = f"{case.method} {case.formatted_path}"

    response = case.call(app=schema_app, headers={"X-API-Key": _fresh_key(schema_app, case.path)})
    if case.method.lower() not in schema.raw_schema["paths"][case.path]:
        # schemathesis probes methods the path does not declare: 405 in the error envelope, nothing else
        assert response.status_code == 405, where
        assert response.json()["error"]["code"] == "method_not_allowed", where
        return
    case.validate_response(response, checks=CHECKS, transport_kwargs={"app": schema_app})
    assert response.status_code != 401, f"{where}: a valid admin key was refused"
    if response.status_code >= 400:
        assert_error_envelope(response, codes, where)

    anonymous = case.call(app=schema_app, headers={"X-API-Key": ""})
    assert anonymous.status_code < 500, where
    if case.path.startswith("/v1"):
        # No key: 401, whatever else is wrong with the request. The key is checked from the headers before the
        # body is read, so even a body that cannot be parsed at all is never looked at.
        code = assert_error_envelope(anonymous, codes, where)
        assert (anonymous.status_code, code) == (401, "missing_api_key"), f"{where}: {anonymous.status_code} {code}"
    else:
        assert anonymous.status_code == response.status_code, where
