"""The decision log: every compare / verify / identify answer leaves one row (key name, route, artist, image
sha256, score, threshold, decision, model id); nothing else does; admins read it with filters."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.storage.audit import AuditLog, AuditRecord
from service.storage.db import open_database
from tests.service.apitools import ADMIN, enrol, error_code, new_key, one, pair, running
from tests.service.conftest import png


def sha(seed: int) -> str:
    return hashlib.sha256(png(seed)).hexdigest()


@pytest.fixture(scope="module")
def session(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running(model_dir, tmp_path_factory.mktemp("audit")) as c:
        enrol(c, "alice", [11, 12, 13])
        key = new_key(c, "dealer", "verify")
        yield c, {"X-API-Key": key}, key


def rows(client: TestClient, **params: object) -> dict:
    r = client.get("/v1/audit", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_decisions_are_logged(session: tuple[TestClient, dict, str]) -> None:
    client, _, _ = session
    # enrolment, listing, keys: no decision, no row
    assert rows(client)["total"] == 0


def test_each_decision_leaves_one_row(session: tuple[TestClient, dict, str]) -> None:
    client, dealer, key = session
    model = client.app.state.runtime.model_id
    compared = client.post("/v1/compare", files=pair(1, 2), data={"threshold": "0.3"}, headers=dealer).json()
    verified = client.post("/v1/verify", files=one(3), data={"artist_id": "alice"}, headers=dealer).json()
    ranked = client.post("/v1/identify", files=one(4), data={"k": "1"}, headers=dealer).json()
    client.post("/v1/verify", files=one(3), data={"artist_id": "nobody"}, headers=dealer)  # refused: no row

    page = rows(client)
    assert page["total"] == 3
    ident, ver, comp = page["items"]  # newest first
    assert comp["route"] == "compare" and comp["key_name"] == "dealer"
    assert (comp["image_sha256"], comp["image_b_sha256"]) == (sha(1), sha(2))
    assert comp["score"] == pytest.approx(compared["score"]) and comp["threshold"] == 0.3
    assert comp["decision"] == ("match" if compared["match"] else "no_match")
    assert comp["model_id"] == model and comp["artist_id"] is None and comp["request_id"]

    assert ver["route"] == "verify" and ver["artist_id"] == "alice" and ver["image_sha256"] == sha(3)
    assert ver["score"] == pytest.approx(verified["score"]) and ver["threshold"] == verified["threshold"]
    assert ver["image_b_sha256"] is None

    assert ident["route"] == "identify" and ident["image_sha256"] == sha(4)
    assert ident["artist_id"] == ranked["candidates"][0]["artist_id"] == "alice"
    assert ident["decision"] == "ranked:1" and ident["threshold"] is None

    # the key itself is nowhere in the log
    assert key not in client.get("/v1/audit", headers=ADMIN).text


def test_filters_and_pagination(session: tuple[TestClient, dict, str]) -> None:
    client, dealer, _ = session
    client.post("/v1/compare", files=pair(5, 6), headers=ADMIN)
    total = rows(client)["total"]
    assert total >= 2
    assert {r["route"] for r in rows(client, route="compare")["items"]} == {"compare"}
    assert {r["key_name"] for r in rows(client, key_name="bootstrap-admin")["items"]} == {"bootstrap-admin"}
    assert rows(client, key_name="nobody")["total"] == 0
    assert all(r["artist_id"] == "alice" for r in rows(client, artist_id="alice")["items"])
    page = rows(client, offset=1, limit=1)
    assert page["total"] == total and len(page["items"]) == 1 and page["offset"] == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert rows(client, since=future)["total"] == 0
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert rows(client, since=past)["total"] == total
    for bad in ("yesterday", "0.5", "1700000000"):
        r = client.get("/v1/audit", params={"since": bad}, headers=ADMIN)
        assert r.status_code == 422 and error_code(r) == "invalid_request", bad
        assert "since" in r.json()["error"]["message"]
    r = client.get("/v1/audit", headers=dealer)
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"


def test_since_compares_in_utc(tmp_path: Path) -> None:
    log = AuditLog(open_database(f"sqlite:///{tmp_path / 'a.db'}"))
    log.record(
        AuditRecord(
            collection_id="default",
            key_name="k",
            route="compare",
            image_sha256="0" * 64,
            decision="match",
            model_id="m",
        )
    )
    time.sleep(0.01)
    now = datetime.now(UTC)
    # the same instant written in another zone must filter the same way
    east, west = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
    assert log.query("default", since=now)[1] == 0
    assert log.query("default", since=(now - timedelta(minutes=1)).astimezone(east))[1] == 1
    assert log.query("default", since=(now + timedelta(minutes=1)).astimezone(west))[1] == 0
    assert log.query("default", since=now - timedelta(minutes=1))[1] == 1
    assert log.query("default", since=(now - timedelta(minutes=1)).replace(tzinfo=None))[1] == 1


def test_since_at_the_ends_of_time(tmp_path: Path) -> None:
    # found by `make fuzz`: 0001-01-01T00:03+01:00 is before year 1 in UTC and used to overflow into a 500
    log = AuditLog(open_database(f"sqlite:///{tmp_path / 'a.db'}"))
    log.record(
        AuditRecord(
            collection_id="default",
            key_name="k",
            route="compare",
            image_sha256="0" * 64,
            decision="match",
            model_id="m",
        )
    )
    assert log.query("default", since=datetime(1, 1, 1, 0, 3, tzinfo=timezone(timedelta(hours=1))))[1] == 1
    assert log.query("default", since=datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))))[1] == 0
