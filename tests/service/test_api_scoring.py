"""HTTP tests of /v1/compare, /v1/verify and /v1/identify against a real (dev) ONNX model: answers, strictness,
errors, concurrency (batched answers equal sequential ones)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from contract.operating import rate_upper
from service.main import create_app
from tests.service.apitools import ADMIN, enrol, error_code, make_settings, new_key, one, pair, running
from tests.service.conftest import png

DECISION_FIELDS = {
    "score",
    "threshold",
    "match",
    "expected_fpr",
    "expected_fnr",
    "expected_fpr_upper",
    "expected_fnr_upper",
    "rule",
    "model",
    "calibration",
    "quality",
    "verdict",
    "summary",
    "points",
    "same_work_as",
}


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("scoring")) as c:
        enrol(c, "alice", [101, 102, 103, 104])
        enrol(c, "bob", [201, 202, 203])
        yield c


@pytest.fixture(scope="module")
def verifier(client: TestClient) -> dict[str, str]:
    return {"X-API-Key": new_key(client, "dealer", "verify")}


def test_compare_answers_a_calibrated_decision(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/compare", files=pair(1, 2), headers=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == DECISION_FIELDS
    # every upload is measured; a model without a quality model scores no quality and has no bands
    q = body["quality"]
    assert (q["score"], q["band"], q["floor"]) == (None, None, None)
    assert [(p["width"], p["height"], p["score"]) for p in q["pictures"]] == [(48, 40, None), (48, 40, None)]
    assert all(0 <= p["sharpness"] <= 1 and p["jpeg_quality"] is None for p in q["pictures"])
    # an empty gallery cannot speak for itself: the rates are the model card's, with its counts (None: not recorded)
    card = client.app.state.runtime.bundle.model.card.calibration
    cal = body["calibration"]
    assert set(cal) == {"source", "genuine_pairs", "impostor_pairs", "confidence", "reason", "model"}
    assert cal["model"] == body["model"]
    assert (cal["source"], cal["genuine_pairs"], cal["impostor_pairs"]) == (
        "model_card",
        card.genuine_pairs,
        card.impostor_pairs,
    )
    assert body["expected_fpr_upper"] == rate_upper(body["expected_fpr"], card.impostor_pairs)
    assert body["expected_fnr_upper"] == rate_upper(body["expected_fnr"], card.genuine_pairs)
    assert cal["confidence"] == (None if card.impostor_pairs is None else 0.95)
    assert 0.0 <= body["score"] <= 1.0
    assert body["match"] == (body["score"] >= body["threshold"])
    assert body["rule"] == "recommended" or body["rule"]
    assert body["model"] == client.app.state.runtime.model_id
    assert 0.0 <= body["expected_fpr"] <= 1.0 and 0.0 <= body["expected_fnr"] <= 1.0


def test_compare_is_symmetric(client: TestClient, verifier: dict[str, str]) -> None:
    ab = client.post("/v1/compare", files=pair(3, 4), headers=verifier).json()
    ba = client.post("/v1/compare", files=pair(4, 3), headers=verifier).json()
    assert ab["score"] == pytest.approx(ba["score"], abs=1e-6)


def test_strictness_fields_choose_the_threshold(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/compare", files=pair(1, 2), data={"threshold": "0.25"}, headers=verifier).json()
    assert r["threshold"] == 0.25 and r["rule"] == "threshold=0.25"
    strict = client.post("/v1/compare", files=pair(1, 2), data={"max_fpr": "0.01"}, headers=verifier).json()
    loose = client.post("/v1/compare", files=pair(1, 2), data={"max_fpr": "0.5"}, headers=verifier).json()
    assert strict["expected_fpr"] <= 0.01 and loose["expected_fpr"] <= 0.5
    assert strict["threshold"] >= loose["threshold"]
    assert strict["rule"].startswith("max_fpr")
    prec = client.post("/v1/compare", files=pair(1, 2), data={"min_precision": "0.1"}, headers=verifier).json()
    assert prec["rule"].startswith("min_precision")
    # about 1 same-artist pair in 100 on the calibration set: a precision its pairs cannot show is refused plainly
    # (a card without counts falls back to the point estimates, which can reach it)
    card = client.app.state.runtime.bundle.model.card.calibration
    high = client.post("/v1/compare", files=pair(1, 2), data={"min_precision": "0.6"}, headers=verifier)
    if card.impostor_pairs is not None:
        assert high.status_code == 422 and error_code(high) == "operating_point_unreachable"
    else:
        assert high.json()["rule"].startswith("min_precision")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"threshold": "1.5"}, 422, "invalid_threshold"),
        ({"threshold": "-0.1"}, 422, "invalid_threshold"),
        ({"threshold": "nan"}, 422, "invalid_threshold"),
        ({"threshold": "high"}, 422, "invalid_threshold"),
        ({"max_fpr": "2"}, 422, "invalid_operating_point"),
        ({"max_fpr": "0"}, 422, "invalid_operating_point"),
        ({"max_fpr": "0.6"}, 422, "invalid_operating_point"),
        ({"max_fpr": "nan"}, 422, "invalid_operating_point"),
        ({"min_precision": "-1"}, 422, "invalid_operating_point"),
        ({"min_precision": "1"}, 422, "invalid_operating_point"),
        ({"threshold": "0.5", "max_fpr": "0.1"}, 400, "conflicting_strictness"),
    ],
)
def test_bad_strictness_is_refused(
    client: TestClient, verifier: dict[str, str], data: dict[str, str], status: int, code: str
) -> None:
    r = client.post("/v1/compare", files=pair(1, 2), data=data, headers=verifier)
    assert r.status_code == status, r.text
    assert error_code(r) == code


def test_compare_names_the_missing_file(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/compare", files={"image_a": ("a.png", png(1), "image/png")}, headers=verifier)
    assert r.status_code == 422
    assert error_code(r) == "invalid_request"
    assert "image_b" in r.json()["error"]["message"]
    r = client.post("/v1/compare", files={"first": ("a.png", png(1)), "second": ("b.png", png(2))}, headers=verifier)
    assert r.status_code == 422 and "image_a" in r.json()["error"]["message"]


def test_compare_with_json_instead_of_multipart(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/compare", json={"image_a": "x", "image_b": "y"}, headers=verifier)
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_verify_against_a_portfolio(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/verify", files=one(105), data={"artist_id": "alice"}, headers=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == DECISION_FIELDS | {"artist_id", "artist_name", "portfolio_size", "top_references"}
    assert body["portfolio_size"] == 4
    works = {w["id"] for w in client.get("/v1/artists/alice/works", headers=ADMIN).json()["works"]}
    refs = body["top_references"]
    assert refs and {r["work_id"] for r in refs} <= works
    assert [r["score"] for r in refs] == sorted((r["score"] for r in refs), reverse=True)
    assert body["match"] == (body["score"] >= body["threshold"])


def test_verify_errors(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/verify", files=one(1), data={"artist_id": "nobody"}, headers=verifier)
    assert r.status_code == 404 and error_code(r) == "unknown_artist"
    client.post("/v1/artists", json={"id": "empty", "name": "No Works"}, headers=ADMIN)
    r = client.post("/v1/verify", files=one(1), data={"artist_id": "empty"}, headers=verifier)
    assert r.status_code == 409 and error_code(r) == "empty_portfolio"
    r = client.post("/v1/verify", files=one(1), headers=verifier)
    assert r.status_code == 422 and "artist_id" in r.json()["error"]["message"]
    r = client.post("/v1/verify", data={"artist_id": "alice"}, headers=verifier)
    assert r.status_code == 422 and "image" in r.json()["error"]["message"]


def test_identify_ranks_enrolled_artists(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post("/v1/identify", files=one(102), data={"k": "2"}, headers=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == client.app.state.runtime.model_id
    cands = body["candidates"]
    assert 1 <= len(cands) <= 2
    assert {c["artist_id"] for c in cands} <= {"alice", "bob"}
    assert all(set(c) == {"artist_id", "name", "score"} for c in cands)
    assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
    default_k = client.post("/v1/identify", files=one(102), headers=verifier).json()
    assert len(default_k["candidates"]) == 2  # k defaults to 5; only two artists have works


def test_identify_names_the_artist_whose_style_it_is(model_dir: Path, tmp_path: Path) -> None:
    # alice/bob above are unrelated noise pictures that the model rightly finds alike; here each artist has a
    # consistent style, and an unseen work in one artist's style must rank that artist first
    from bench.pictures import painting_jpeg

    with running(model_dir, tmp_path) as c:
        for artist in (3, 4, 5):
            assert (
                c.post("/v1/artists", json={"id": f"a{artist}", "name": f"A{artist}"}, headers=ADMIN).status_code == 201
            )
            files = [("image", (f"{i}.jpg", painting_jpeg(artist, i), "image/jpeg")) for i in range(4)]
            assert c.post(f"/v1/artists/a{artist}/works", files=files, headers=ADMIN).status_code == 201
        for artist in (3, 4, 5):
            query = {"image": ("q.jpg", painting_jpeg(artist, 50), "image/jpeg")}
            cands = c.post("/v1/identify", files=query, data={"k": "3"}, headers=ADMIN).json()["candidates"]
            assert [x["artist_id"] for x in cands][0] == f"a{artist}", cands


@pytest.mark.parametrize("k", ["0", "51", "two"])
def test_identify_bad_k(client: TestClient, verifier: dict[str, str], k: str) -> None:
    r = client.post("/v1/identify", files=one(1), data={"k": k}, headers=verifier)
    assert r.status_code == 422 and error_code(r) == "invalid_k"  # the scorer's own code for k
    assert "k" in r.json()["error"]["message"]


def test_scoring_rejects_bad_images(client: TestClient, verifier: dict[str, str]) -> None:
    r = client.post(
        "/v1/compare", files={"image_a": ("a.jpg", b"not a picture"), "image_b": ("b.png", png(1))}, headers=verifier
    )
    assert r.status_code == 415 and error_code(r) == "unsupported_format"
    r = client.post("/v1/identify", files={"image": ("a.png", b"")}, headers=verifier)
    assert r.status_code == 422


def test_oversized_upload_is_413_without_reading_it_all(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path, max_upload_bytes=50_000, max_request_bytes=300_000) as c:
        big = b"\xff\xd8" + b"\0" * 100_000
        r = c.post("/v1/compare", files={"image_a": ("a.jpg", big), "image_b": ("b.png", png(1))}, headers=ADMIN)
        assert r.status_code == 413 and error_code(r) == "image_too_large"
        r = c.post(
            "/v1/compare", files={"image_a": ("a.jpg", b"\0" * 400_000), "image_b": ("b", png(1))}, headers=ADMIN
        )
        assert r.status_code == 413 and error_code(r) == "request_too_large"


@pytest.mark.anyio
async def test_concurrent_compares_equal_sequential(model_dir: Path, tmp_path: Path) -> None:
    # a generous wait so the 16 requests really share backbone batches
    app = create_app(make_settings(model_dir, tmp_path, batch_max_wait_ms=50.0, batch_max_size=8))
    pairs = [(i, 100 + i) for i in range(16)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=ADMIN) as c:

            async def compare(a: int, b: int) -> float:
                r = await c.post("/v1/compare", files=pair(a, b))
                assert r.status_code == 200, r.text
                return r.json()["score"]

            together = await asyncio.gather(*(compare(a, b) for a, b in pairs))
            batched = max(app.state.runtime.embedder.batcher.recent_batch_sizes)
            one_by_one = [await compare(a, b) for a, b in pairs]
    assert batched > 1, "the concurrent requests never shared a batch"
    assert together == pytest.approx(one_by_one, abs=1e-5)
