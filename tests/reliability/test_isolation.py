"""Collections are isolated (issue 20): no request with a key of one collection reads, scores against, counts or
infers anything of another — ids, thumbnails, identify candidates, calibration counts, keys, the decision log,
error messages.

Two collections, `alpha` and `beta`, made by an operator over HTTP, each with an admin and a verify key and an
artist `shared` (the same id in both) plus one of its own. Every /v1 operation of the OpenAPI schema (enumerated:
a new route without a probe here fails the test) is driven with each of the four keys, once naming the other
collection's ids (artist, work, key, collection) and once naming ids that never existed: the two answers must be
the same answer (status, code, message with the id put back). Then what the listings, identify, verify, the
thumbnails, the calibration and the audit log show is checked against each collection's own data; then guessing
and path tricks; and last, that nothing the sweep did (its deletes included) changed the other collection.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.pictures import painting_jpeg
from tests.reliability.conftest import ADMIN_KEY, make_settings, running_app

OPERATOR_KEY = "isolation-operator-key-0123456789"
OP = {"X-API-Key": OPERATOR_KEY}
# alpha: artists shared (painter 1), alpha-only (painter 2); beta: shared (painter 3), beta-only (painter 4), beta-two
PAINTERS = {"alpha": {"shared": 1, "alpha-only": 2}, "beta": {"shared": 3, "beta-only": 4, "beta-two": 5}}


def jpeg(painter: int, i: int) -> tuple[str, bytes, str]:
    return (f"p{painter}-{i}.jpg", painting_jpeg(painter, i), "image/jpeg")


class Dealer:
    """One collection as its keys see it."""

    def __init__(self, client: TestClient, name: str):
        r = client.post("/v1/collections", json={"id": name, "name": f"Dealer {name}"}, headers=OP)
        assert r.status_code == 201, r.text
        self.name = name
        self.admin = {"X-API-Key": r.json()["key"]["key"]}
        self.admin_key_id = r.json()["key"]["id"]
        r = client.post("/v1/keys", json={"name": f"{name}-desk", "scope": "verify"}, headers=self.admin)
        assert r.status_code == 201, r.text
        self.verify = {"X-API-Key": r.json()["key"]}
        self.verify_key_id = r.json()["id"]
        self.works: dict[str, list[str]] = {}
        for artist, painter in PAINTERS[name].items():
            r = client.post("/v1/artists", json={"id": artist, "name": f"{name} painter {painter}"}, headers=self.admin)
            assert r.status_code == 201, r.text
            files = [("image", jpeg(painter, i)) for i in range(3)]
            r = client.post(f"/v1/artists/{artist}/works", files=files, headers=self.admin)
            assert r.status_code == 201, r.text
            self.works[artist] = [w["id"] for w in r.json()["works"]]

    @property
    def keys(self) -> dict[str, dict[str, str]]:
        return {"admin": self.admin, "verify": self.verify}

    def own_artists(self) -> list[str]:
        return [a for a in PAINTERS[self.name] if a != "shared"]


@pytest.fixture(scope="module")
def world(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(
        model_dir, tmp_path_factory.mktemp("isolation"), operator_key=OPERATOR_KEY, gallery_calibration_min_artists=2
    )
    with running_app(settings) as (app, client):
        alpha, beta = Dealer(client, "alpha"), Dealer(client, "beta")
        # each collection's decision log holds a verify and an identify
        for d in (alpha, beta):
            painter = PAINTERS[d.name]["shared"]
            files = {"image": jpeg(painter, 7)}
            assert (
                client.post("/v1/verify", files=files, data={"artist_id": "shared"}, headers=d.verify).status_code
                == 200
            )
            assert client.post("/v1/identify", files=files, headers=d.verify).status_code == 200
        for v in app.state.runtime.bundle.views():
            v.calibrator.wait(30)
        yield app, client, alpha, beta


def _normal(r: Any, replace: dict[str, str]) -> tuple[int, Any]:
    """An answer with the ids the request named put back to placeholders, and request ids dropped."""
    text = r.text
    for value, placeholder in replace.items():
        text = text.replace(value, placeholder)
    text = re.sub(r"[0-9a-f]{32}", "<request-id>", text)
    return r.status_code, text


# every /v1 operation: (method, path) -> a request built from the ids it names
Ids = dict[str, str]
Probe = Callable[[TestClient, dict[str, str], Ids], Any]


def _path(path: str, ids: Ids) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def _get(path: str) -> Probe:
    return lambda c, h, ids: c.get(_path(path, ids), headers=h)


def _delete(path: str) -> Probe:
    return lambda c, h, ids: c.delete(_path(path, ids), headers=h)


PROBES: dict[tuple[str, str], Probe] = {
    ("POST", "/v1/compare"): lambda c, h, ids: c.post(
        "/v1/compare", files={"image_a": jpeg(1, 8), "image_b": jpeg(3, 8)}, headers=h
    ),
    ("POST", "/v1/verify"): lambda c, h, ids: c.post(
        "/v1/verify", files={"image": jpeg(4, 8)}, data={"artist_id": ids["artist_id"]}, headers=h
    ),
    ("POST", "/v1/identify"): lambda c, h, ids: c.post("/v1/identify", files={"image": jpeg(4, 0)}, headers=h),
    ("GET", "/v1/artists"): _get("/v1/artists"),
    ("POST", "/v1/artists"): lambda c, h, ids: c.post(
        "/v1/artists", json={"id": ids["new_artist"], "name": "x"}, headers=h
    ),
    ("GET", "/v1/artists/{artist_id}"): _get("/v1/artists/{artist_id}"),
    ("PATCH", "/v1/artists/{artist_id}"): lambda c, h, ids: c.patch(
        _path("/v1/artists/{artist_id}", ids), json={"name": "renamed"}, headers=h
    ),
    ("PATCH", "/v1/artists/{artist_id}/works/{work_id}"): lambda c, h, ids: c.patch(
        _path("/v1/artists/shared/works/{work_id}", ids), json={"title": "retitled"}, headers=h
    ),
    ("GET", "/v1/strictness"): lambda c, h, ids: c.get(
        "/v1/strictness", params={"route": "verify", "artist_id": ids["artist_id"]}, headers=h
    ),
    ("DELETE", "/v1/artists/{artist_id}"): _delete("/v1/artists/{artist_id}"),
    ("GET", "/v1/artists/{artist_id}/works"): _get("/v1/artists/{artist_id}/works"),
    ("POST", "/v1/artists/{artist_id}/works"): lambda c, h, ids: c.post(
        _path("/v1/artists/{artist_id}/works", ids), files=[("image", jpeg(9, 1))], headers=h
    ),
    ("DELETE", "/v1/artists/{artist_id}/works/{work_id}"): lambda c, h, ids: c.delete(
        _path("/v1/artists/shared/works/{work_id}", ids), headers=h
    ),
    ("GET", "/v1/artists/{artist_id}/works/{work_id}/image"): lambda c, h, ids: c.get(
        _path("/v1/artists/shared/works/{work_id}/image", ids), headers=h
    ),
    ("GET", "/v1/keys"): _get("/v1/keys"),
    ("POST", "/v1/keys"): lambda c, h, ids: c.post(
        "/v1/keys", json={"name": ids["new_key"], "scope": "verify"}, headers=h
    ),
    ("DELETE", "/v1/keys/{key_ref}"): _delete("/v1/keys/{key_ref}"),
    ("GET", "/v1/audit"): lambda c, h, ids: c.get("/v1/audit", params={"artist_id": ids["artist_id"]}, headers=h),
    ("GET", "/v1/archive"): _get("/v1/archive"),
    ("GET", "/v1/me"): _get("/v1/me"),
    ("GET", "/v1/collections"): _get("/v1/collections"),
    ("POST", "/v1/collections"): lambda c, h, ids: c.post(
        "/v1/collections", json={"id": ids["collection_id"]}, headers=h
    ),
    ("GET", "/v1/collections/{collection_id}"): _get("/v1/collections/{collection_id}"),
    ("DELETE", "/v1/collections/{collection_id}"): _delete("/v1/collections/{collection_id}"),
    ("POST", "/v1/collections/{collection_id}/keys"): lambda c, h, ids: c.post(
        _path("/v1/collections/{collection_id}/keys", ids), json={"name": "k", "scope": "verify"}, headers=h
    ),
}


def v1_operations(app: Any) -> list[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in sorted(paths.items()) if p.startswith("/v1") for m in sorted(ops)]


def test_every_operation_answers_a_foreign_id_exactly_as_a_missing_one(world) -> None:
    app, client, alpha, beta = world
    operations = v1_operations(app)
    assert set(operations) == set(PROBES), "every /v1 operation needs an isolation probe here"
    compared = 0
    for me, other in ((alpha, beta), (beta, alpha)):
        foreign_artist = other.own_artists()[0]
        for scope, headers in me.keys.items():
            for key_ref in (str(other.verify_key_id), f"{other.name}-desk"):
                foreign = {
                    "artist_id": foreign_artist,
                    "work_id": other.works["shared"][0],
                    "key_ref": key_ref,
                    "collection_id": other.name,
                    "new_artist": f"n-{uuid.uuid4().hex[:8]}",
                    "new_key": f"n-{uuid.uuid4().hex[:8]}",
                }
                ghost = {
                    "artist_id": f"ghost-{uuid.uuid4().hex[:6]}",
                    "work_id": str(uuid.uuid4()),
                    "key_ref": str(10_000 + compared) if key_ref.isdigit() else f"ghost-{uuid.uuid4().hex[:6]}",
                    "collection_id": f"ghost-{uuid.uuid4().hex[:6]}",
                    "new_artist": f"n-{uuid.uuid4().hex[:8]}",
                    "new_key": f"n-{uuid.uuid4().hex[:8]}",
                }
                for op in operations:
                    a = PROBES[op](client, headers, foreign)
                    b = PROBES[op](client, headers, ghost)
                    back_a = {v: f"<{k}>" for k, v in foreign.items()}
                    back_b = {v: f"<{k}>" for k, v in ghost.items()}
                    assert a.status_code < 500, (me.name, scope, op, a.text)
                    listings = ("/v1/artists", "/v1/keys", "/v1/audit", "/v1/me", "/v1/archive")
                    if op[0] == "GET" and a.status_code == 200 and op[1] in listings:
                        continue  # listings: their contents are checked below
                    if a.status_code in (200, 201) and op[1] in ("/v1/compare", "/v1/identify"):
                        continue  # no id in the request: scores and rankings checked below
                    if a.status_code == 201:
                        assert b.status_code == 201, (me.name, scope, op, b.text)  # a name free here is free
                        continue
                    assert _normal(a, back_a) == _normal(b, back_b), (me.name, scope, op, a.text, b.text)
                    compared += 1
    assert compared > 4 * 2 * 10


def test_listings_show_only_the_collection_own(world) -> None:
    app, client, alpha, beta = world
    for me, other in ((alpha, beta), (beta, alpha)):
        artists = client.get("/v1/artists", params={"limit": 500}, headers=me.admin).json()
        ids = {a["id"] for a in artists["items"]}
        assert not ids & set(other.own_artists()) and artists["total"] == len(artists["items"])
        shared = client.get("/v1/artists/shared", headers=me.admin).json()
        assert shared["name"].startswith(me.name) and shared["works"] == len(me.works["shared"])
        works = client.get("/v1/artists/shared/works", headers=me.admin).json()["works"]
        assert {w["id"] for w in works} == set(me.works["shared"])
        keys = client.get("/v1/keys", headers=me.admin).json()
        assert {k["collection"] for k in keys} == {me.name} and all(k["name"] != f"{other.name}-desk" for k in keys)
        audit = client.get("/v1/audit", params={"limit": 1000}, headers=me.admin).json()
        assert audit["total"] == len(audit["items"]) >= 2
        assert {e["collection_id"] for e in audit["items"]} == {me.name}
        assert all(not e["key_name"].startswith(other.name) for e in audit["items"])
        for filters in ({"key_name": f"{other.name}-desk"}, {"artist_id": other.own_artists()[0]}):
            assert client.get("/v1/audit", params=filters, headers=me.admin).json()["total"] == 0
        with tarfile.open(fileobj=io.BytesIO(client.get("/v1/archive", headers=me.admin).content)) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            archived = [json.loads(line) for line in tar.extractfile("artists.jsonl").read().splitlines()]  # type: ignore[union-attr]
            works = [json.loads(line) for line in tar.extractfile("works.jsonl").read().splitlines()]  # type: ignore[union-attr]
        assert manifest["collection"]["id"] == me.name and not {a["id"] for a in archived} & set(other.own_artists())
        assert {a["name"] for a in archived if a["id"] == "shared"} == {shared["name"]}
        assert not {w["id"] for w in works} & {w for ws in other.works.values() for w in ws}
        for scope, headers in me.keys.items():  # the calling key names its own collection only
            mine = client.get("/v1/me", headers=headers).json()
            assert (mine["scope"], mine["collection"], mine["collection_name"]) == (scope, me.name, f"Dealer {me.name}")


def test_scoring_reaches_only_the_collection_own_works(world) -> None:
    app, client, alpha, beta = world
    for me, other in ((alpha, beta), (beta, alpha)):
        painter = PAINTERS[other.name][other.own_artists()[0]]
        # the very bytes the other collection enrolled: identify ranks only this collection's artists
        r = client.post("/v1/identify", files={"image": jpeg(painter, 0)}, data={"k": "50"}, headers=me.verify)
        candidates = r.json()["candidates"]
        assert {c["artist_id"] for c in candidates} <= set(PAINTERS[me.name])
        # the other collection's enrolled bytes are no copy of anything here (compare and identify alike) ...
        assert r.json()["same_work_as"] == [], r.json()["same_work_as"]
        pair = {"image_a": jpeg(painter, 0), "image_b": jpeg(painter, 1)}
        assert client.post("/v1/compare", files=pair, headers=me.verify).json()["same_work_as"] == []
        # ... while this collection's own enrolled bytes are
        own = PAINTERS[me.name][me.own_artists()[0]]
        r = client.post("/v1/identify", files={"image": jpeg(own, 0)}, headers=me.verify)
        assert [c["work_id"] for c in r.json()["same_work_as"]] == [me.works[me.own_artists()[0]][0]], r.text
        shared = [c for c in candidates if c["artist_id"] == "shared"]
        assert shared and shared[0]["name"].startswith(me.name)
        own_score = client.post(
            "/v1/verify", files={"image": jpeg(painter, 0)}, data={"artist_id": "shared"}, headers=me.verify
        ).json()["score"]
        assert shared[0]["score"] == pytest.approx(own_score, abs=1e-4)  # scored against this portfolio alone
        r = client.post(
            "/v1/verify", files={"image": jpeg(painter, 0)}, data={"artist_id": "shared"}, headers=me.verify
        )
        body = r.json()
        assert body["portfolio_size"] == len(me.works["shared"])
        assert {t["work_id"] for t in body["top_references"]} <= set(me.works["shared"])
        # the same artist id's picture of the other collection is unknown here, thumbnails too
        for work in other.works["shared"]:
            r = client.get(f"/v1/artists/shared/works/{work}/image", headers=me.verify)
            assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_work"
        r = client.get(f"/v1/artists/shared/works/{me.works['shared'][0]}/image", headers=me.verify)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_calibration_counts_are_the_collection_own(world) -> None:
    """Gallery calibration from each collection's works alone: the counts differ between the two (alpha: 2
    artists with 3 works, beta: 3), and enrolling more in beta leaves alpha's tables and answers as they were."""
    app, client, alpha, beta = world
    runtime = app.state.runtime

    def calibration(d: Dealer) -> dict:
        files = {"image_a": jpeg(1, 9), "image_b": jpeg(1, 10)}
        for _ in range(2):  # the first request may start the background build
            body = client.post("/v1/compare", files=files, headers=d.verify).json()
            runtime.bundle.view(d.name).calibrator.wait(30)
        return body["calibration"]

    a, b = calibration(alpha), calibration(beta)
    tables = {d.name: runtime.bundle.view(d.name).calibrator.tables for d in (alpha, beta)}
    # every within-artist pair: alpha 2 × C(3,2) = 6, beta 3 × 3 = 9; cross-artist pairs: 9 and 27
    assert (tables["alpha"].genuine_pairs, tables["alpha"].impostor_pairs) == (6, 9)
    assert (tables["beta"].genuine_pairs, tables["beta"].impostor_pairs) == (9, 27)
    # what a reply says of the gallery (its source, or why the card's tables are used instead) names its own only
    assert "6 same-artist / 9 different-artist" in a["reason"] or (a["genuine_pairs"], a["impostor_pairs"]) == (6, 9)
    assert "9 same-artist / 27 different-artist" in b["reason"] or (b["genuine_pairs"], b["impostor_pairs"]) == (9, 27)
    r = client.post("/v1/artists/beta-two/works", files=[("image", jpeg(5, 3))], headers=beta.admin)
    assert r.status_code == 201
    assert calibration(alpha) == a
    calibration(beta)
    assert runtime.bundle.view("beta").calibrator.tables.genuine_pairs == 12
    assert runtime.bundle.view("alpha").calibrator.tables.genuine_pairs == 6


def test_guessing_and_path_tricks(world) -> None:
    app, client, alpha, beta = world
    h = alpha.admin
    missing = client.get("/v1/artists/ghost-artist", headers=h)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_artist")
    tricks = [
        "/v1/artists/beta%2Fbeta-only",
        "/v1/artists/..%2Fbeta-only",
        "/v1/artists/%2e%2e/beta-only",
        "/v1/artists/beta:beta-only",
        "/v1/artists/beta.beta-only",
        "/v1/artists/beta-only%00",
        "/v1/artists/BETA-ONLY",
        "/v1/artists/beta-only?collection=beta",
        "/v1/collections/beta/../../artists/beta-only",
    ]
    for path in tricks:
        # each trick against the other collection answers as the same trick against one that never existed
        twin = path.replace("beta", "zeta").replace("BETA", "ZETA")
        extra = {"X-Collection": "beta", "X-Collection-Id": "beta"}
        r, t = client.get(path, headers={**h, **extra}), client.get(twin, headers={**h, **extra})
        assert r.status_code in (404, 403), (path, r.status_code, r.text)
        assert _normal(r, {"beta": "<c>", "BETA": "<C>"}) == _normal(t, {"zeta": "<c>", "ZETA": "<C>"}), (path, r.text)
        assert "beta painter" not in r.text, (path, r.text)
    # a header or a body naming another collection changes nothing: the key's collection is the only one
    r = client.get("/v1/artists", headers={**h, "X-Collection": "beta"}, params={"collection": "beta"})
    assert {a["id"] for a in r.json()["items"]} == set(PAINTERS["alpha"]) | _created(r)
    r = client.post("/v1/artists", json={"id": "smuggled", "name": "x", "collection_id": "beta"}, headers=h)
    assert r.status_code in (201, 422)
    assert client.get("/v1/artists/smuggled", headers=beta.admin).status_code == 404
    # guessed work ids: never anything but unknown_work
    for _ in range(20):
        r = client.get(f"/v1/artists/shared/works/{uuid.uuid4()}/image", headers=alpha.verify)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_work")
    # a name taken in the other collection is free here, for artists, keys and works alike
    assert client.post("/v1/artists", json={"id": "beta-two", "name": "Mine"}, headers=h).status_code == 201
    assert client.post("/v1/keys", json={"name": "beta-desk", "scope": "verify"}, headers=h).status_code == 201
    same_bytes = [("image", jpeg(PAINTERS["beta"]["beta-two"], 0))]
    assert client.post("/v1/artists/beta-two/works", files=same_bytes, headers=h).status_code == 201


def _created(r: Any) -> set[str]:
    """Artists the probes created in alpha (their ids start with `n-`) or the tricks test made."""
    return {a["id"] for a in r.json()["items"] if a["id"].startswith("n-") or a["id"] in ("smuggled", "beta-two")}


def test_the_embedding_cache_is_the_collection_own(world) -> None:
    """A picture sent again answers from the embedding cache (service/serving/cache.py), faster: so the same bytes
    sent in another collection must be a miss there, or the speed of an answer would tell one dealer that another
    sent them. Counted, not timed: the process's cache hits and misses, and the pictures the backbone ran. A
    deleted collection's entries go with it."""
    app, client, alpha, beta = world
    runtime = app.state.runtime
    stats, batcher = runtime.factory.cache_stats, runtime.embedder.batcher
    fresh = {"image_a": jpeg(6, 20), "image_b": jpeg(6, 21)}  # bytes no collection has sent

    def sent(headers: dict[str, str], path: str = "/v1/compare", files: dict = fresh) -> tuple[int, int, int]:
        before = (stats.hits, stats.misses, batcher.items_run)
        r = client.post(path, files=files, headers=headers)
        assert r.status_code == 200, r.text
        return stats.hits - before[0], stats.misses - before[1], batcher.items_run - before[2]

    assert sent(alpha.verify) == (0, 2, 2)
    assert sent(beta.verify) == (0, 2, 2)  # alpha's entries are not beta's
    assert sent(beta.admin) == (2, 0, 0)  # beta's own are, for any of its keys
    assert sent(alpha.verify) == (2, 0, 0)
    # a work alpha enrolled is not in beta's cache either
    enrolled = {"image": jpeg(PAINTERS["alpha"]["alpha-only"], 2)}
    assert sent(alpha.verify, "/v1/identify", enrolled)[0] == 1
    assert sent(beta.verify, "/v1/identify", enrolled)[:2] == (0, 1)
    # a collection deleted: its entries go, the others' stay
    r = client.post("/v1/collections", json={"id": "gamma", "name": "Dealer gamma"}, headers=OP)
    assert r.status_code == 201, r.text
    gamma = {"X-API-Key": r.json()["key"]["key"]}
    assert sent(gamma) == (0, 2, 2)
    cache = runtime.bundle.cache
    assert {k.collection for k in cache.kept()} >= {"alpha", "beta", "gamma"}
    assert client.delete("/v1/collections/gamma", headers=OP).status_code in (200, 204)
    assert "gamma" not in {k.collection for k in cache.kept()}
    assert {k.collection for k in cache.kept()} >= {"alpha", "beta"}


def test_a_collection_made_again_elsewhere_has_none_of_the_old_ones_cache(world) -> None:
    """Another process (a replica behind the same proxy) deletes a collection and makes it again under the same id,
    for another dealer perhaps: this process, which cached the old collection's pictures and never saw the delete,
    must answer the new one's first request as a miss, as it would on the replica where the delete ran."""
    from service.storage.collections import Collections
    from service.storage.keys import KeyStore

    app, client, _, _ = world
    runtime = app.state.runtime
    stats = runtime.factory.cache_stats
    fresh = {"image_a": jpeg(7, 30), "image_b": jpeg(7, 31)}
    elsewhere, keys = Collections(runtime.db, runtime.settings.data_dir), KeyStore(runtime.db)  # not this runtime's
    _, _, old_key = elsewhere.create_with_key(keys, "delta", "Dealer delta")

    def sent(key: str) -> tuple[int, int]:
        before = (stats.hits, stats.misses)
        r = client.post("/v1/compare", files=fresh, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        return stats.hits - before[0], stats.misses - before[1]

    assert sent(old_key) == (0, 2)
    assert sent(old_key) == (2, 0)  # cached here
    elsewhere.delete("delta")
    _, _, new_key = elsewhere.create_with_key(keys, "delta", "Another dealer")
    assert client.post("/v1/compare", files=fresh, headers={"X-API-Key": old_key}).status_code == 401
    assert sent(new_key) == (0, 2)  # the old collection's entries were dropped before the new one's request
    assert sent(new_key) == (2, 0)  # and the new one caches as ever


def test_the_other_collection_is_untouched(world) -> None:
    """Run last in this module: the sweep's deletes, enrolments and key revocations with foreign ids changed
    nothing of the other collection."""
    app, client, alpha, beta = world
    for d in (alpha, beta):
        for artist, works in d.works.items():
            r = client.get(f"/v1/artists/{artist}/works", headers=d.admin)
            assert r.status_code == 200, (d.name, artist, r.text)
            listed = {w["id"] for w in r.json()["works"]}
            assert set(works) <= listed, (d.name, artist)
        assert (
            client.post(
                "/v1/compare", files={"image_a": jpeg(1, 1), "image_b": jpeg(1, 2)}, headers=d.verify
            ).status_code
            == 200
        )
    collections = {c["id"]: c for c in client.get("/v1/collections", headers=OP).json()}
    assert {"alpha", "beta", "default"} <= set(collections)
    assert client.get("/v1/artists", headers={"X-API-Key": ADMIN_KEY}).json()["total"] == 0
