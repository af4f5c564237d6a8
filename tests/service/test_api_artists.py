"""HTTP tests of artists and works: CRUD, pagination, enrolment, hostile uploads that must change nothing, and
persistence across a restart (two apps on one data dir)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.apitools import (
    ADMIN,
    animated_gif,
    enrol,
    error_code,
    huge_png,
    one,
    running,
    truncated_jpeg,
)
from tests.service.conftest import png


@pytest.fixture
def client(model_dir: Path, tmp_path: Path):
    with running(model_dir, tmp_path) as c:
        yield c


def _originals(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "originals").rglob("*.bin")} if (data_dir / "originals").exists() else set()


def test_artist_crud(client: TestClient) -> None:
    r = client.post("/v1/artists", json={"id": "monet", "name": "Claude Monet", "meta": {"born": 1840}}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "monet" and r.json()["meta"] == {"born": 1840} and r.json()["works"] == 0
    assert r.json()["created"].endswith("Z")
    r = client.post("/v1/artists", json={"id": "monet", "name": "Again"}, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "artist_exists"
    got = client.get("/v1/artists/monet", headers=ADMIN).json()
    assert got["name"] == "Claude Monet" and got["meta"] == {"born": 1840}
    r = client.get("/v1/artists/nobody", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_artist"
    assert client.delete("/v1/artists/monet", headers=ADMIN).status_code == 204
    assert client.get("/v1/artists/monet", headers=ADMIN).status_code == 404
    r = client.delete("/v1/artists/monet", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_artist"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "no id"},
        {"id": "has space", "name": "x"},
        {"id": "a/b", "name": "x"},
        {"id": "x" * 65, "name": "x"},
        {"id": "ok", "name": ""},
        {"id": "ok", "name": "x", "meta": [1, 2]},
        {"id": "ok", "name": "x", "unknown": 1},
    ],
)
def test_artist_body_validation(client: TestClient, body: dict) -> None:
    r = client.post("/v1/artists", json=body, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_request"
    assert client.get("/v1/artists", headers=ADMIN).json()["total"] == 0


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/v1/artists", content=b"{not json", headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 422 and error_code(r) == "invalid_request"


def test_artist_pagination(client: TestClient) -> None:
    for i in range(5):
        client.post("/v1/artists", json={"id": f"a{i}", "name": f"Artist {i}"}, headers=ADMIN)
    page = client.get("/v1/artists", params={"offset": 1, "limit": 2}, headers=ADMIN).json()
    assert page["total"] == 5 and page["offset"] == 1 and page["limit"] == 2
    assert [a["id"] for a in page["items"]] == ["a1", "a2"]
    assert client.get("/v1/artists", params={"offset": 10}, headers=ADMIN).json()["items"] == []
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}):
        r = client.get("/v1/artists", params=bad, headers=ADMIN)
        assert r.status_code == 422 and error_code(r) == "invalid_pagination"


def test_works_enrol_list_delete(client: TestClient, tmp_path: Path) -> None:
    works = enrol(client, "monet", [1, 2, 3])
    assert len(works) == 3
    assert [w["sha256"] for w in works] == [hashlib.sha256(png(s)).hexdigest() for s in (1, 2, 3)]
    assert [(w["artist_id"], w["filename"]) for w in works] == [("monet", f"monet-{s}.png") for s in (1, 2, 3)]
    listed = client.get("/v1/artists/monet/works", headers=ADMIN).json()["works"]
    assert [w["id"] for w in listed] == [w["id"] for w in works]
    assert client.get("/v1/artists/monet", headers=ADMIN).json()["works"] == 3
    assert len(_originals(tmp_path)) == 3

    r = client.post("/v1/artists/monet/works", files=one(2, "again.png"), headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "duplicate_work"

    assert client.delete(f"/v1/artists/monet/works/{works[0]['id']}", headers=ADMIN).status_code == 204
    r = client.delete(f"/v1/artists/monet/works/{works[0]['id']}", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_work"
    assert len(client.get("/v1/artists/monet/works", headers=ADMIN).json()["works"]) == 2
    assert len(_originals(tmp_path)) == 2

    r = client.post("/v1/artists/nobody/works", files=one(9), headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_artist"
    r = client.get("/v1/artists/nobody/works", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "unknown_artist"

    assert client.delete("/v1/artists/monet", headers=ADMIN).status_code == 204
    assert _originals(tmp_path) == set()


def test_too_many_files_in_one_request(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path, max_files_per_request=2) as c:
        c.post("/v1/artists", json={"id": "monet", "name": "Monet"}, headers=ADMIN)
        files = [("image", (f"{s}.png", png(s))) for s in (1, 2, 3)]
        r = c.post("/v1/artists/monet/works", files=files, headers=ADMIN)
        assert r.status_code == 413 and error_code(r) == "too_many_files"
        assert c.get("/v1/artists/monet/works", headers=ADMIN).json()["works"] == []


BAD_UPLOADS = {
    "zero_bytes": ([("image", ("empty.jpg", b"", "image/jpeg"))], 422, "empty_image"),
    "text_named_jpg": (
        [("image", ("notes.jpg", b"this is not a painting\n" * 20, "image/jpeg"))],
        415,
        "unsupported_format",
    ),
    "truncated_jpeg": ([("image", ("cut.jpg", truncated_jpeg(), "image/jpeg"))], 422, "corrupt_image"),
    "png_20000x20000": ([("image", ("bomb.png", huge_png(), "image/png"))], 413, "image_too_many_pixels"),
    "animated_gif": ([("image", ("anim.gif", animated_gif(), "image/gif"))], 415, "animated_image"),
    "wrong_field_name": ([("file", ("ok.png", png(5), "image/png"))], 422, "invalid_request"),
    # one good file and one bad: all or nothing
    "good_then_bad": (
        [("image", ("ok.png", png(6), "image/png")), ("image", ("cut.jpg", truncated_jpeg(), "image/jpeg"))],
        422,
        "corrupt_image",
    ),
}


@pytest.fixture(scope="module")
def enrolled(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("bad-uploads")
    with running(model_dir, data_dir) as c:
        enrol(c, "monet", [1, 2])
        yield c, data_dir


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_refused_and_changes_nothing(enrolled: tuple[TestClient, Path], case: str) -> None:
    client, data_dir = enrolled
    files, status, code = BAD_UPLOADS[case]
    before = client.get("/v1/artists/monet/works", headers=ADMIN).json()
    originals = _originals(data_dir)
    audit_before = client.get("/v1/audit", headers=ADMIN).json()["total"]

    r = client.post("/v1/artists/monet/works", files=files, headers=ADMIN)
    assert r.status_code == status, r.text
    assert error_code(r) == code
    assert client.get("/v1/artists/monet/works", headers=ADMIN).json() == before
    assert _originals(data_dir) == originals

    # the same upload on a scoring route: refused, and no decision logged
    r = client.post("/v1/verify", files=files, data={"artist_id": "monet"}, headers=ADMIN)
    assert r.status_code == status, r.text
    assert client.get("/v1/audit", headers=ADMIN).json()["total"] == audit_before


def test_restart_keeps_artists_and_works(model_dir: Path, tmp_path: Path) -> None:
    with running(model_dir, tmp_path) as c:
        works = enrol(c, "monet", [1, 2, 3], name="Claude Monet")
        c.post("/v1/artists", json={"id": "empty", "name": "Nobody Yet"}, headers=ADMIN)
        first = c.post("/v1/verify", files=one(4), data={"artist_id": "monet"}, headers=ADMIN).json()
    with running(model_dir, tmp_path) as c:
        artists = c.get("/v1/artists", headers=ADMIN).json()
        assert [(a["id"], a["works"]) for a in artists["items"]] == [("monet", 3), ("empty", 0)]
        listed = c.get("/v1/artists/monet/works", headers=ADMIN).json()["works"]
        assert [(w["id"], w["sha256"]) for w in listed] == [(w["id"], w["sha256"]) for w in works]
        again = c.post("/v1/verify", files=one(4), data={"artist_id": "monet"}, headers=ADMIN).json()
        assert again["score"] == pytest.approx(first["score"], abs=1e-6)
        assert again["portfolio_size"] == 3
        # the decision log survived too: the first run's row and this one
        assert c.get("/v1/audit", params={"route": "verify"}, headers=ADMIN).json()["total"] == 2
