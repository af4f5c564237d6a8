"""Issue 17 item 3: a picture of a painting already enrolled — the same bytes, or the same painting photographed
again (at or above the model card's measured same-painting similarity, training/evaluation/duplicates.py) — is refused
at enrolment under any artist with a 409 naming the artist and work, unless the caller says it is intended; a query
that is a copy of an enrolled work says so (`same_work_as`), and verify judges it against the portfolio's other
works."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from bench.modelcopy import linked_copy
from contract.card import Card, SameWork
from tests.service.apitools import ADMIN, error_code, running
from tests.service.conftest import encode


def photo(name: str, quality: int = 90, scale: float = 1.0) -> bytes:
    im = Image.fromarray(getattr(data, name)()).convert("RGB")
    if scale != 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
    return encode(im, "JPEG", quality=quality)


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    def measured(card: Card) -> Card:
        same = SameWork(threshold=0.88, measured_on="test", different_pairs=1, false_same=0, copies=1, found=1.0)
        return card.model_copy(update={"calibration": card.calibration.model_copy(update={"same_work": same})})

    model = linked_copy(model_dir, tmp_path_factory.mktemp("same-work-model"), measured)
    with running(model, tmp_path_factory.mktemp("dups"), gallery_calibration=False) as c:
        for artist, name in (("renoir", "Pierre-Auguste Renoir"), ("vangogh", "Vincent van Gogh")):
            assert c.post("/v1/artists", json={"id": artist, "name": name}, headers=ADMIN).status_code == 201
        files = [("image", ("cat.jpg", photo("chelsea"))), ("image", ("cup.jpg", photo("coffee")))]
        r = c.post("/v1/artists/renoir/works", files=files, data={"title": ["Cat", "Cup"]}, headers=ADMIN)
        assert r.status_code == 201, r.text
        yield c


def _works(c: TestClient, artist: str) -> list[dict]:
    return c.get(f"/v1/artists/{artist}/works", headers=ADMIN).json()["works"]


def test_the_same_file_under_another_artist_is_refused_naming_the_work(client: TestClient) -> None:
    cat = _works(client, "renoir")[0]
    r = client.post("/v1/artists/vangogh/works", files={"image": ("x.jpg", photo("chelsea"))}, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "duplicate_work"
    message = r.json()["error"]["message"]
    assert cat["id"] in message and "'renoir' (Pierre-Auguste Renoir)" in message and "'Cat'" in message
    assert "allow_duplicate=true" in message and _works(client, "vangogh") == []


def test_the_same_painting_photographed_again_is_refused(client: TestClient) -> None:
    again = photo("chelsea", quality=60, scale=0.7)  # other bytes, the same painting
    r = client.post("/v1/artists/vangogh/works", files={"image": ("again.jpg", again)}, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "same_painting"
    assert "the same painting (similarity 0.9" in r.json()["error"]["message"]
    # twice in one upload, too
    files = [("image", ("a.jpg", photo("astronaut"))), ("image", ("b.jpg", photo("astronaut", 50, 0.6)))]
    r = client.post("/v1/artists/vangogh/works", files=files, headers=ADMIN)
    assert r.status_code == 409 and error_code(r) == "same_painting" and "'b.jpg'" in r.json()["error"]["message"]
    # a different painting is no duplicate
    r = client.post("/v1/artists/vangogh/works", files={"image": ("rocket.jpg", photo("rocket"))}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert [w["filename"] for w in _works(client, "vangogh")] == ["rocket.jpg"]


def test_intended_duplicates_are_enrolled(client: TestClient) -> None:
    again = photo("coffee", quality=60, scale=0.7)
    r = client.post(
        "/v1/artists/vangogh/works",
        files={"image": ("cup-again.jpg", again)},
        data={"allow_duplicate": "true"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    # the same bytes twice in one portfolio never are
    r = client.post(
        "/v1/artists/renoir/works",
        files={"image": ("cat.jpg", photo("chelsea"))},
        data={"allow_duplicate": "true"},
        headers=ADMIN,
    )
    assert r.status_code == 409 and error_code(r) == "duplicate_work"


def test_a_query_copying_an_enrolled_work_says_so(client: TestClient) -> None:
    cat = _works(client, "renoir")[0]
    again = photo("chelsea", quality=60, scale=0.7)
    files = {"image_a": ("a.jpg", again), "image_b": ("b.jpg", photo("astronaut"))}
    body = client.post("/v1/compare", files=files, headers=ADMIN).json()
    (copy,) = body["same_work_as"]
    assert (copy["image"], copy["artist_id"], copy["work_id"], copy["title"]) == ("image_a", "renoir", cat["id"], "Cat")
    assert not copy["identical"] and copy["similarity"] >= 0.88
    # the verdict first, then the copy, by title and artist name
    assert body["summary"].startswith(body["verdict"].replace("_", " ").capitalize())
    assert "Painting A is the same painting (similarity" in body["summary"] and "“Cat” by" in body["summary"]
    # verify against the portfolio it belongs to: judged against the other works, not against itself
    files = {"image": ("q.jpg", photo("chelsea"))}
    v = client.post("/v1/verify", files=files, data={"artist_id": "renoir"}, headers=ADMIN).json()
    assert v["same_work_as"][0]["identical"] and v["same_work_as"][0]["work_id"] == cat["id"]
    assert v["portfolio_size"] == 1 and cat["id"] not in {r["work_id"] for r in v["top_references"]}
    log = client.get("/v1/audit", params={"route": "verify", "limit": 1}, headers=ADMIN).json()["items"][0]
    assert log["same_work_as"] == cat["id"]
    # a fresh painting is nobody's copy; a re-encoded enrolled one is
    files = {"image_a": ("a.jpg", photo("astronaut")), "image_b": ("b.jpg", photo("rocket", 80))}
    r = client.post("/v1/compare", files=files, headers=ADMIN).json()
    assert [c["image"] for c in r["same_work_as"]] == ["image_b"]  # the rocket is vangogh's enrolled work
