"""Issue 17 item 2: catalogue entries on works (title, date, medium, dimensions, inventory number, photo credit,
notes: bounded, validated) set at enrolment and editable; artists renamable; shown in verify's top references and
the decision log. (Export/import: tests/service/test_backup.py; the page: tests/web/test_page.py; the client:
tests/client/test_client.py; revision 0002: tests/service/test_migrations.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.errors import ServiceError
from service.serving.catalogue import checked, per_work
from tests.service.apitools import ADMIN, enrol, error_code, one, running
from tests.service.conftest import png


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("catalogue")) as c:
        yield c


def test_checked_bounds_and_cleans() -> None:
    assert checked({"title": "  Sunflowers ", "date": "", "notes": "line 1\nline 2"}) == {
        "title": "Sunflowers",
        "date": None,
        "notes": "line 1\nline 2",
    }
    for bad, words in [
        ({"title": "x" * 257}, "at most 256"),
        ({"title": "a\nb"}, "printable"),
        ({"medium": "oil\x00"}, "printable"),
        ({"date": 1887}, "must be text"),
        ({"colour": "red"}, "unknown catalogue field"),
    ]:
        with pytest.raises(ServiceError) as e:
            checked(bad)
        assert e.value.code == "invalid_catalogue" and words in e.value.message
    assert per_work({"title": ["A", ""], "date": None}, 2) == [{"title": "A"}, {}]
    with pytest.raises(ServiceError) as e:
        per_work({"title": ["A"]}, 2)
    assert "once per image" in e.value.message


def test_enrolment_sets_the_catalogue_and_verify_shows_it(client: TestClient) -> None:
    assert client.post("/v1/artists", json={"id": "vermeer", "name": "Vermeer"}, headers=ADMIN).status_code == 201
    files = [("image", (f"{s}.png", png(s), "image/png")) for s in (1, 2)]
    data = {"title": ["The Milkmaid", "The Astronomer"], "inventory_number": ["SK-A-2344", ""], "date": ["c. 1658", ""]}
    r = client.post("/v1/artists/vermeer/works", files=files, data=data, headers=ADMIN)
    assert r.status_code == 201, r.text
    works = r.json()["works"]
    assert [(w["title"], w["inventory_number"], w["date"]) for w in works] == [
        ("The Milkmaid", "SK-A-2344", "c. 1658"),
        ("The Astronomer", None, None),
    ]
    listed = client.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"]
    assert [w["title"] for w in listed] == ["The Milkmaid", "The Astronomer"]
    v = client.post("/v1/verify", files=one(3), data={"artist_id": "vermeer"}, headers=ADMIN).json()
    assert {r["title"] for r in v["top_references"]} == {"The Milkmaid", "The Astronomer"}
    milkmaid = next(r for r in v["top_references"] if r["title"] == "The Milkmaid")
    assert milkmaid["inventory_number"] == "SK-A-2344" and milkmaid["date"] == "c. 1658"
    log = client.get("/v1/audit", params={"route": "verify", "limit": 1}, headers=ADMIN).json()["items"][0]
    assert log["artist_name"] == "Vermeer" and log["work_id"] == v["top_references"][0]["work_id"]
    assert log["work_title"] == v["top_references"][0]["title"]


def test_a_mismatched_or_bad_catalogue_enrols_nothing(client: TestClient) -> None:
    enrol(client, "hals", [10])
    files = [("image", (f"{s}.png", png(s), "image/png")) for s in (11, 12)]
    for data, words in [({"title": ["only one"]}, "once per image"), ({"title": ["a", "x" * 300]}, "at most 256")]:
        r = client.post("/v1/artists/hals/works", files=files, data=data, headers=ADMIN)
        assert r.status_code == 422 and error_code(r) == "invalid_catalogue" and words in r.json()["error"]["message"]
    assert len(client.get("/v1/artists/hals/works", headers=ADMIN).json()["works"]) == 1


def test_works_are_editable_and_artists_renamable(client: TestClient) -> None:
    (w,) = enrol(client, "leyster", [20])
    url = f"/v1/artists/leyster/works/{w['id']}"
    r = client.patch(url, json={"title": "Self-Portrait", "medium": "oil on canvas", "notes": "a\nb"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["medium"], r.json()["sha256"]) == (
        "Self-Portrait",
        "oil on canvas",
        w["sha256"],
    )
    r = client.patch(url, json={"medium": None, "dimensions": "74.6 × 65.1 cm"}, headers=ADMIN)
    body = r.json()
    assert (body["title"], body["medium"], body["dimensions"]) == ("Self-Portrait", None, "74.6 × 65.1 cm")
    for bad, status, code in [
        ({"title": "x" * 300}, 422, "invalid_catalogue"),
        ({"colour": "red"}, 422, "invalid_request"),
        ({"title": 5}, 422, "invalid_request"),
    ]:
        r = client.patch(url, json=bad, headers=ADMIN)
        assert (r.status_code, error_code(r)) == (status, code)
    assert client.get("/v1/artists/leyster/works", headers=ADMIN).json()["works"][0]["title"] == "Self-Portrait"
    assert error_code(client.patch("/v1/artists/leyster/works/nope", json={}, headers=ADMIN)) == "unknown_work"
    assert error_code(client.patch(f"/v1/artists/hals/works/{w['id']}", json={}, headers=ADMIN)) == "unknown_work"

    r = client.patch("/v1/artists/leyster", json={"name": "Judith Leyster"}, headers=ADMIN)
    assert r.status_code == 200 and (r.json()["name"], r.json()["works"]) == ("Judith Leyster", 1)
    assert client.get("/v1/artists/leyster", headers=ADMIN).json()["name"] == "Judith Leyster"
    for bad, code in [({"name": ""}, "invalid_request"), ({"id": "x"}, "invalid_request")]:
        r = client.patch("/v1/artists/leyster", json=bad, headers=ADMIN)
        assert (r.status_code, error_code(r)) == (422, code)
    assert client.patch("/v1/artists/nobody", json={"name": "X"}, headers=ADMIN).status_code == 404
    v = client.post("/v1/verify", files=one(21), data={"artist_id": "leyster"}, headers=ADMIN).json()
    assert v["artist_name"] == "Judith Leyster"
