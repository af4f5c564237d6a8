"""Schema migrations (service/storage/db.py, service/storage/migrations/): the migrated schema is the declared
one on SQLite and PostgreSQL; a database of the release before migrations (tests/service/previous_release/)
upgrades with `python -m service db upgrade` and then serves what a fresh deployment with the same portfolios
serves; `BRUSHPRINT_MIGRATE_ON_START=false` refuses an old schema; nothing outside tests creates tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.__main__ import main
from service.serving.model import Model
from service.storage.db import SchemaError, current_revision, head_revision, make_engine, migrate, sqlite_url
from service.storage.schema import Base
from tests.service import previous_release
from tests.service.apitools import ADMIN, OPERATOR, enrol, running
from tests.service.conftest import ROOT, png

QUERIES = {"vermeer": 4, "hals": 13, "leyster": 23}


def schema_diff(url: str) -> list:
    db = make_engine(url)
    try:
        with db.connect() as c:
            return compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "db" / "brushprint.db")
    return str(request.getfixturevalue("pg_url"))


def test_migrations_build_the_declared_schema(url: str) -> None:
    db = make_engine(url)
    try:
        assert current_revision(db) is None
        assert migrate(db) == (None, head_revision())
        assert migrate(db) == (head_revision(), head_revision())  # a second run changes nothing
    finally:
        db.dispose()
    assert schema_diff(url) == []


def answers(client, headers: dict[str, str]) -> dict:
    out: dict = {"verify": {}, "identify": {}}
    for artist, seed in QUERIES.items():
        files = {"image": ("q.png", png(seed), "image/png")}
        r = client.post("/v1/verify", files=files, data={"artist_id": artist}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out["verify"][artist] = (round(body["score"], 5), body["match"], body["portfolio_size"], body["model"])
        r = client.post("/v1/identify", files=files, data={"k": "3"}, headers=headers)
        out["identify"][artist] = [(c["artist_id"], round(c["score"], 5)) for c in r.json()["candidates"]]
    artists = client.get("/v1/artists", headers=headers).json()["items"]
    out["artists"] = [(a["id"], a["name"], a["meta"], a["works"]) for a in artists]
    out["works"] = {
        a["id"]: [
            (w["sha256"], w["filename"])
            for w in client.get(f"/v1/artists/{a['id']}/works", headers=headers).json()["works"]
        ]
        for a in artists
    }
    return out


def test_previous_release_database_upgrades_and_serves_the_same(
    url: str, model_dir: Path, model: Model, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    written = previous_release.fill(url, data, model)
    argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "--database-url", url]
    assert main([*argv, "db", "current"]) == 0
    assert json.loads(capsys.readouterr().out) == {"current": None, "head": head_revision()}
    assert main([*argv, "db", "upgrade"]) == 0
    assert json.loads(capsys.readouterr().out) == {"before": None, "after": head_revision(), "head": head_revision()}
    assert schema_diff(url) == []

    key = {"X-API-Key": previous_release.KEY}
    with running(model_dir, data, database_url=url, migrate_on_start=False) as c:
        assert c.get("/readyz").status_code == 200
        log = c.get("/v1/audit", headers=key).json()
        keys = {k["name"]: k["active"] for k in c.get("/v1/keys", headers=key).json()}
        upgraded = answers(c, key)
        # revision 0003: everything the single-collection deployment held is the `default` collection's
        (default,) = c.get("/v1/collections", headers=OPERATOR).json()
        works = sum(len(seeds) for _, _, seeds in previous_release.ARTISTS.values())
        assert (default["id"], default["artists"], default["works"]) == ("default", 3, works)
        assert {k["collection"] for k in c.get("/v1/keys", headers=key).json()} == {"default"}
        assert {e["collection_id"] for e in log["items"]} == {"default"}
        # and a collection made afterwards sees none of it
        made = c.post("/v1/collections", json={"id": "newcomer"}, headers=OPERATOR).json()
        newcomer = {"X-API-Key": made["key"]["key"]}
        assert c.get("/v1/artists", headers=newcomer).json()["total"] == 0
        assert c.get("/v1/artists/vermeer", headers=newcomer).status_code == 404
        assert c.get("/v1/audit", headers=newcomer).json()["total"] == 0
    assert keys["ops"] is True and keys["old-desk"] is False
    assert log["total"] == 2 and [e["request_id"] for e in log["items"]] == [None, "r1"]
    assert log["items"][1]["score"] == 0.71 and log["items"][1]["time"].startswith("2026-01-15T10:30:00")

    fresh = tmp_path / "fresh"
    with running(model_dir, fresh) as c:
        for artist, (name, meta, seeds) in previous_release.ARTISTS.items():
            r = c.post("/v1/artists", json={"id": artist, "name": name, "meta": meta}, headers=ADMIN)
            assert r.status_code == 201, r.text
            files = [("image", (f"{artist}-{s}.png", png(s), "image/png")) for s in seeds]
            assert c.post(f"/v1/artists/{artist}/works", files=files, headers=ADMIN).status_code == 201
        reference = answers(c, ADMIN)
    assert upgraded == reference
    assert [w["id"] for w in written["works"]][:1] == [previous_release.work_id(1)]


def test_old_schema_is_refused_without_migration_on_start(model_dir: Path, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    db = make_engine(url)
    with db.begin() as c:
        for stmt in previous_release.schema_statements("sqlite"):
            c.exec_driver_sql(stmt)
    db.dispose()
    refused = pytest.raises(SchemaError, match="python -m service db upgrade")
    with refused, running(model_dir, tmp_path / "data", database_url=url, migrate_on_start=False):
        pass
    with running(model_dir, tmp_path / "data", database_url=url) as c:  # the default: migrated on start
        assert c.get("/readyz").status_code == 200
        enrol(c, "monet", [1])
    assert schema_diff(url) == []


def test_tables_are_created_only_by_migrations() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "service").rglob("*.py"))
        if re.search(r"\.create_all\(|\bcreate_table\(", p.read_text()) and "migrations" not in p.parts
    ]
    assert offenders == []
