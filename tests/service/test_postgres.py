"""The service on PostgreSQL (`BRUSHPRINT_DATABASE_URL=postgresql+psycopg://…`): the real HTTP flows against a
throwaway cluster started by tests/pg.sh, plus the store-level details where PostgreSQL is stricter than SQLite
(column types, time zones, text that SQLite accepts and PostgreSQL refuses).

Never skipped: CI installs PostgreSQL (`make postgres-deps`), so a missing server is a failure that says so.
Export, import and the restore drill on PostgreSQL are tested beside their SQLite cases, on the same cluster
(the `database_url` fixture runs each on both): tests/service/test_backup.py, test_backup_snapshot.py.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.api.errors import status_of
from service.errors import ServiceError
from service.storage.audit import AuditLog, AuditRecord
from service.storage.db import make_engine, open_database
from tests.service.apitools import ADMIN, enrol, error_code, new_key, one, pair, running
from tests.service.conftest import png


def count(url: str, sql: str, **params: object) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(sa.text(sql), params).scalar_one())
    finally:
        engine.dispose()


def originals(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "originals").rglob("*.bin")}


def index_matches_store(client: TestClient, url: str) -> None:
    """The in-memory faiss index holds exactly the works that have an embedding of the current model."""
    gallery = client.app.state.runtime.bundle.gallery
    gallery.index.check()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            stored = c.execute(
                sa.text(
                    "SELECT w.id, w.artist_id FROM works w JOIN embeddings e ON e.work_id = w.id WHERE e.model_id = :m"
                ),
                {"m": gallery.model_id},
            ).all()
    finally:
        engine.dispose()
    assert sorted(zip(gallery.index.work_ids, gallery.index.artist_ids, strict=True)) == sorted(map(tuple, stored))


def test_schema_uses_native_postgres_types(model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    with running(model_dir, tmp_path, database_url=pg_url) as c:
        assert c.get("/readyz").status_code == 200
    engine = sa.create_engine(pg_url)
    try:
        insp = sa.inspect(engine)
        assert {"artists", "works", "embeddings", "api_keys", "audit"} <= set(insp.get_table_names())
        types = {
            (t, col["name"]): str(col["type"])
            for t in ("artists", "works", "embeddings", "api_keys", "audit")
            for col in insp.get_columns(t)
        }
        # every time is a timestamptz: naive timestamps would shift with the server's zone
        for key in [
            ("artists", "created"),
            ("works", "created"),
            ("embeddings", "created"),
            ("api_keys", "created_at"),
            ("api_keys", "revoked_at"),
            ("audit", "time"),
        ]:
            assert types[key] == "TIMESTAMP", key
            assert next(col for col in insp.get_columns(key[0]) if col["name"] == key[1])["type"].timezone, key
        assert types[("embeddings", "vector")] == "BYTEA"
        assert types[("artists", "meta")] == "JSON"
        fks = insp.get_foreign_keys("works") + insp.get_foreign_keys("embeddings")
        assert {fk["options"].get("ondelete") for fk in fks} == {"CASCADE"}
    finally:
        engine.dispose()


def test_portfolio_lifecycle_on_postgres(model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    meta = {"born": 1840, "school": "Impressionnisme — Giverny", "tags": ["plein air", "☀"]}
    with running(model_dir, tmp_path, database_url=pg_url) as c:
        r = c.post("/v1/artists", json={"id": "monet", "name": "Claude Monet", "meta": meta}, headers=ADMIN)
        assert r.status_code == 201, r.text
        created = datetime.fromisoformat(r.json()["created"])
        assert created.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - created) < timedelta(minutes=1)
        r = c.post("/v1/artists", json={"id": "monet", "name": "Again"}, headers=ADMIN)
        assert r.status_code == 409 and error_code(r) == "artist_exists"

        # several works in one request: one transaction, upload order kept
        works = enrol(c, "renoir", [1, 2, 3])
        listed = c.get("/v1/artists/renoir/works", headers=ADMIN).json()["works"]
        assert [w["id"] for w in listed] == [w["id"] for w in works]
        assert [w["sha256"] for w in listed] == [hashlib.sha256(png(s)).hexdigest() for s in (1, 2, 3)]
        files = [("image", (f"m{s}.png", png(s), "image/png")) for s in (4, 5)]
        assert c.post("/v1/artists/monet/works", files=files, headers=ADMIN).status_code == 201
        assert count(pg_url, "SELECT count(*) FROM works") == 5
        assert count(pg_url, "SELECT count(*) FROM embeddings") == 5

        # duplicates: against the store, and twice in one request
        r = c.post("/v1/artists/renoir/works", files=one(2, "again.png"), headers=ADMIN)
        assert r.status_code == 409 and error_code(r) == "duplicate_work"
        twice = [("image", ("x.png", png(8), "image/png")), ("image", ("y.png", png(8), "image/png"))]
        r = c.post("/v1/artists/renoir/works", files=twice, headers=ADMIN)
        assert r.status_code == 409 and error_code(r) == "duplicate_work"
        # good files then a bad one: nothing of it is kept, in the database or on disk
        before = originals(tmp_path)
        mixed = [("image", (f"ok{s}.png", png(s), "image/png")) for s in (6, 7)]
        mixed.append(("image", ("bad.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")))
        r = c.post("/v1/artists/renoir/works", files=mixed, headers=ADMIN)
        assert r.status_code in (415, 422), r.text
        assert count(pg_url, "SELECT count(*) FROM works") == 5
        assert originals(tmp_path) == before and len(before) == 5
        index_matches_store(c, pg_url)

        # keys: create, use, revoke
        dealer_key = new_key(c, "dealer", "verify")
        dealer = {"X-API-Key": dealer_key}
        # a painting not enrolled (a copy of an enrolled work would be judged against the others only)
        verified = c.post("/v1/verify", files=one(9), data={"artist_id": "renoir"}, headers=dealer)
        assert verified.status_code == 200, verified.text
        assert verified.json()["portfolio_size"] == 3
        assert {r["work_id"] for r in verified.json()["top_references"]} <= {w["id"] for w in works}
        ranked = c.post("/v1/identify", files=one(3), data={"k": "2"}, headers=dealer)
        assert ranked.status_code == 200, ranked.text
        # the query is one of renoir's works, byte for byte: named as such, and left out of the ranking
        (copy,) = ranked.json()["same_work_as"]
        assert (copy["artist_id"], copy["artist_name"], copy["work_id"], copy["identical"]) == (
            "renoir",
            "Renoir",
            works[2]["id"],
            True,
        )
        compared = c.post("/v1/compare", files=pair(1, 1), headers=dealer)
        assert compared.status_code == 200 and compared.json()["match"] is True
        r = c.delete("/v1/keys/dealer", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["revoked_at"] is not None
        r = c.post("/v1/compare", files=pair(1, 2), headers=dealer)
        assert r.status_code == 401 and error_code(r) == "invalid_api_key"

        # the decision log: three rows, newest first, times in UTC
        audit = c.get("/v1/audit", headers=ADMIN).json()
        assert audit["total"] == 3 == count(pg_url, "SELECT count(*) FROM audit")
        assert [(a["route"], a["key_name"]) for a in audit["items"]] == [
            ("compare", "dealer"),
            ("identify", "dealer"),
            ("verify", "dealer"),
        ]
        assert audit["items"][2]["score"] == pytest.approx(verified.json()["score"])
        assert audit["items"][2]["artist_id"] == "renoir"
        # `since` in another zone names the same instant
        east = timezone(timedelta(hours=9))
        since = (datetime.now(UTC) - timedelta(minutes=5)).astimezone(east).isoformat()
        assert c.get("/v1/audit", params={"since": since}, headers=ADMIN).json()["total"] == 3
        since = (datetime.now(UTC) + timedelta(minutes=5)).astimezone(east).isoformat()
        assert c.get("/v1/audit", params={"since": since}, headers=ADMIN).json()["total"] == 0
        first_score = verified.json()["score"]

    # restart: a second app on the same database and data dir keeps everything
    with running(model_dir, tmp_path, database_url=pg_url) as c:
        index_matches_store(c, pg_url)
        assert len(c.app.state.runtime.bundle.gallery) == 5 and c.app.state.runtime.bundle.gallery.missing == 0
        artists = c.get("/v1/artists", headers=ADMIN).json()
        assert [(a["id"], a["works"]) for a in artists["items"]] == [("monet", 2), ("renoir", 3)]
        assert artists["items"][0]["meta"] == meta
        listed = c.get("/v1/artists/renoir/works", headers=ADMIN).json()["works"]
        assert [w["id"] for w in listed] == [w["id"] for w in works]
        again = c.post("/v1/verify", files=one(9), data={"artist_id": "renoir"}, headers=ADMIN).json()
        assert again["score"] == pytest.approx(first_score, abs=1e-6)
        r = c.post("/v1/compare", files=pair(1, 2), headers=dealer)
        assert r.status_code == 401  # still revoked
        keys = {k["name"]: k for k in c.get("/v1/keys", headers=ADMIN).json()}
        assert keys["dealer"]["revoked_at"] is not None and keys["bootstrap-admin"]["revoked_at"] is None
        assert c.get("/v1/audit", headers=ADMIN).json()["total"] == 4

        # deleting an artist takes its works, embeddings and originals with it
        assert c.delete("/v1/artists/renoir", headers=ADMIN).status_code == 204
        assert count(pg_url, "SELECT count(*) FROM works WHERE artist_id = 'renoir'") == 0
        assert count(pg_url, "SELECT count(*) FROM embeddings") == 2
        assert len(originals(tmp_path)) == 2
        index_matches_store(c, pg_url)
        r = c.post("/v1/verify", files=one(3), data={"artist_id": "renoir"}, headers=ADMIN)
        assert r.status_code == 404 and error_code(r) == "unknown_artist"
        ranked = c.post("/v1/identify", files=one(3), headers=ADMIN).json()["candidates"]
        assert [x["artist_id"] for x in ranked] == ["monet"]

    # the database enforces the cascade on its own, too (another writer may not go through the gallery)
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM artists WHERE id = 'monet'"))
    finally:
        engine.dispose()
    assert count(pg_url, "SELECT count(*) FROM works") == 0 == count(pg_url, "SELECT count(*) FROM embeddings")


def test_text_postgres_refuses_is_a_client_error(model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    """SQLite stores NUL characters; PostgreSQL text cannot. Such input must be a 4xx, never a 500."""
    with running(model_dir, tmp_path, database_url=pg_url) as c:
        r = c.post("/v1/artists", json={"id": "nul", "name": "Ba\x00d"}, headers=ADMIN)
        assert r.status_code == 422, r.text
        r = c.post("/v1/artists", json={"id": "nul", "name": "ok", "meta": {"note": "a\x00b"}}, headers=ADMIN)
        # JSON escapes it (\u0000), which the `json` column keeps as written
        assert r.status_code == 201, r.text
        assert c.get("/v1/artists/nul", headers=ADMIN).json()["meta"] == {"note": "a\x00b"}
        for path in ("/v1/artists/a%00b", "/v1/artists/a%00b/works"):
            r = c.get(path, headers=ADMIN)
            assert r.status_code == 404 and error_code(r) == "unknown_artist", (path, r.text)
        r = c.delete("/v1/artists/nul/works/a%00b", headers=ADMIN)
        assert r.status_code == 404, r.text
        r = c.delete("/v1/keys/a%00b", headers=ADMIN)
        assert r.status_code == 404, r.text
        r = c.delete("/v1/artists/a%00b", headers=ADMIN)
        assert r.status_code == 404 and error_code(r) == "unknown_artist", r.text
        r = c.post("/v1/artists/a%00b/works", files=one(1), headers=ADMIN)
        assert r.status_code == 404 and error_code(r) == "unknown_artist", r.text
        for params in ({"key_name": "a\x00b"}, {"route": "\x00"}, {"artist_id": "a\x00"}):
            r = c.get("/v1/audit", params=params, headers=ADMIN)
            assert r.status_code == 200 and r.json()["total"] == 0, r.text
        r = c.post("/v1/verify", files=one(1), data={"artist_id": "a\x00b"}, headers=ADMIN)
        assert r.status_code == 404 and error_code(r) == "unknown_artist", r.text
        keys = c.app.state.keys
        with pytest.raises(ServiceError) as refused:
            keys.create("dea\x00ler", "verify")
        assert status_of(refused.value) == 422
        assert c.get("/readyz").status_code == 200


def test_audit_log_times_round_trip_in_utc(pg_url: str) -> None:
    log = AuditLog(open_database(pg_url))
    before = datetime.now(UTC)
    log.record(
        AuditRecord(key_name="k", route="compare", image_sha256="0" * 64, decision="match", model_id="m", score=0.5)
    )
    entries, total = log.query()
    assert total == 1
    t = entries[0].time
    assert t.utcoffset() == timedelta(0) and before <= t <= datetime.now(UTC)
    west = timezone(timedelta(hours=-5))
    assert log.query(since=(before - timedelta(seconds=1)).astimezone(west))[1] == 1
    assert log.query(since=(before + timedelta(minutes=1)).astimezone(west))[1] == 0
    assert log.query(since=(before - timedelta(seconds=1)).replace(tzinfo=None))[1] == 1


def test_replicas_starting_together_on_a_fresh_database(pg_server: str) -> None:
    """`--scale brushprint=3` on an empty database: every replica migrates the schema and creates the bootstrap
    admin key at once. Unserialised, CREATE TABLE races (duplicate pg_type row) and so does the key insert: the
    migration lock lets one replica migrate while the others wait, then find the schema current."""
    from service.storage.db import current_revision, head_revision, migrate
    from service.storage.keys import KeyStore

    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    failures: list[str] = []
    try:
        for _ in range(3):
            name = f"bp_boot_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
            url = sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
            barrier = threading.Barrier(4)
            infos = []

            def boot(url: str = url, barrier: threading.Barrier = barrier, infos: list = infos) -> None:
                engine = make_engine(url)
                try:
                    barrier.wait()
                    migrate(engine)
                    infos.append(KeyStore(engine).ensure("bootstrap-admin", "test-admin-key-0123456789abcdef"))
                    AuditLog(engine)
                except Exception as e:  # collected: an exception in a thread would not fail the test
                    failures.append(f"{type(e).__name__}: {e}")
                finally:
                    engine.dispose()

            threads = [threading.Thread(target=boot) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not failures, failures
            assert len(infos) == 4 and len({i.id for i in infos}) == 1
            check = make_engine(url)
            assert current_revision(check) == head_revision()
            check.dispose()
            assert count(url, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == 1
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_replicas_see_each_others_changes(model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    """Two processes on one database (README: `--scale brushprint=3`): each keeps a faiss index in memory, and
    each must answer from what the other enrolled or deleted, without a restart."""
    with running(model_dir, tmp_path, database_url=pg_url) as a, running(model_dir, tmp_path, database_url=pg_url) as b:
        works = enrol(a, "monet", [1, 2])
        r = b.post("/v1/verify", files=one(5), data={"artist_id": "monet"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["portfolio_size"] == 2
        assert b.post("/v1/identify", files=one(5), headers=ADMIN).json()["candidates"][0]["artist_id"] == "monet"
        index_matches_store(b, pg_url)

        # b enrols and deletes too; a follows, and a's own next write still lands in its index correctly
        enrol(b, "renoir", [3])
        assert b.delete(f"/v1/artists/monet/works/{works[0]['id']}", headers=ADMIN).status_code == 204
        r = a.post("/v1/verify", files=one(5), data={"artist_id": "monet"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["portfolio_size"] == 1, r.text
        enrol(a, "degas", [4])
        index_matches_store(a, pg_url)
        assert b.delete("/v1/artists/renoir", headers=ADMIN).status_code == 204
        ranked = a.post("/v1/identify", files=one(3), data={"k": "5"}, headers=ADMIN).json()["candidates"]
        assert {x["artist_id"] for x in ranked} == {"monet", "degas"}
        index_matches_store(a, pg_url)
        index_matches_store(b, pg_url)
