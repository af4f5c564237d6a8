"""Backup and restore (`python -m service export|import`, service/ops/backup.py) and bulk enrolment (`enrol`)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from service.__main__ import main
from service.serving.model import Model
from tests.service.apitools import ADMIN, enrol, error_code, new_key, one, running
from tests.service.conftest import png

SEEDS = {"vermeer": [1, 2, 3, 4], "hals": [11, 12, 13], "leyster": [21, 22]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRUSHPRINT_"):
            monkeypatch.delenv(name)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def answers(client, key: str) -> list[dict]:
    h = {"X-API-Key": key}
    out = []
    for artist in SEEDS:
        for q in (1, 12, 40):
            r = client.post("/v1/verify", files=one(q), data={"artist_id": artist}, headers=h)
            assert r.status_code == 200, r.text
            out.append(r.json())
    r = client.post("/v1/identify", files=one(22), data={"k": "3"}, headers=h)
    assert r.status_code == 200, r.text
    out.append(r.json())
    return out


def state(client) -> dict:
    artists = client.get("/v1/artists", headers=ADMIN).json()
    works = {a["id"]: client.get(f"/v1/artists/{a['id']}/works", headers=ADMIN).json() for a in artists["items"]}
    listed = client.get("/v1/keys", headers=ADMIN).json()
    keys = sorted((k["name"], k["scope"], k["prefix"], k["revoked_at"]) for k in listed)
    audit = client.get("/v1/audit?limit=1000", headers=ADMIN).json()
    return {"artists": artists, "works": works, "keys": keys, "audit_total": audit["total"]}


@pytest.fixture
def source(model_dir: Path, tmp_path: Path) -> tuple[Path, str, list[dict], dict]:
    """A gallery with three artists, a verify key, a revoked key and some audit rows; and its exported archive."""
    data = tmp_path / "source"
    with running(model_dir, data) as c:
        for artist, seeds in SEEDS.items():
            enrol(c, artist, seeds)
        work = c.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"][0]["id"]
        catalogue = {"title": "The Milkmaid", "date": "c. 1658", "inventory_number": "SK-A-2344"}
        assert c.patch(f"/v1/artists/vermeer/works/{work}", json=catalogue, headers=ADMIN).status_code == 200
        key = new_key(c, "desk", "verify")
        new_key(c, "old", "verify")
        assert c.delete("/v1/keys/old", headers=ADMIN).status_code in (200, 204)
        before = answers(c, key)
        snapshot = state(c)
    return data, key, before, snapshot


def _export(capsys, model_dir: Path, data: Path, out: Path) -> dict:
    code, doc, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "export", "--out", str(out))
    assert code == 0, err
    return doc


def test_round_trip_gives_identical_answers(model_dir: Path, tmp_path: Path, source, capsys) -> None:
    data, key, before, snapshot = source
    archive = tmp_path / "backup.tar"
    doc = _export(capsys, model_dir, data, archive)
    assert doc["counts"]["artists"] == 3 and doc["counts"]["works"] == 9 and doc["originals"] == 9
    assert doc["counts"]["keys"] == 3  # bootstrap admin, desk, old (revoked)
    assert doc["counts"]["audit"] == len(before)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        keys = tar.extractfile("keys.jsonl").read().decode()  # type: ignore[union-attr]
    assert names[-1] == "manifest.json"
    assert key not in keys and "key_hash" in keys  # hashes only, never a key

    target = tmp_path / "target"
    code, doc, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(target), "import", str(archive))
    assert code == 0, err
    assert doc["reembedded"] == 0 and doc["counts"]["works"] == 9
    with running(model_dir, target) as c:
        restored = state(c)
        assert restored["artists"] == snapshot["artists"]
        assert restored["works"] == snapshot["works"]
        assert restored["works"]["vermeer"]["works"][0]["title"] == "The Milkmaid"  # catalogue entries travel
        assert restored["keys"] == snapshot["keys"]
        assert restored["audit_total"] == snapshot["audit_total"]
        after = answers(c, key)  # the archived verify key works on the restored deployment
    assert after == before


def test_import_into_another_model_reembeds(
    model_dir: Path, other_model: Model, tmp_path: Path, source, capsys
) -> None:
    data, key, before, _ = source
    archive = tmp_path / "backup.tar"
    _export(capsys, model_dir, data, archive)
    target = tmp_path / "target"
    other = str(other_model.model_dir)
    code, doc, err = cli(capsys, "--model-dir", other, "--data-dir", str(target), "import", str(archive))
    assert code == 0, err
    assert doc["reembedded"] == 9 and doc["failed"] == [] and doc["model"] == other_model.model_id
    assert doc["archive_models"] != [other_model.model_id]
    with running(Path(other), target) as c:
        assert c.get("/readyz").status_code == 200
        after = answers(c, key)
    assert {a["model"] for a in after[:-1]} == {other_model.model_id}
    assert [a["portfolio_size"] for a in after[:-1]] == [a["portfolio_size"] for a in before[:-1]]


def _tamper(archive: Path, out: Path) -> None:
    """Flip one byte inside the first original's data."""
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        m = next(m for m in tar.getmembers() if m.name.startswith("originals/"))
    raw[m.offset_data + m.size // 2] ^= 0xFF
    out.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "not_an_archive"])
def test_damaged_archive_is_refused_and_changes_nothing(
    model_dir: Path, tmp_path: Path, source, capsys, damage: str
) -> None:
    data, _, _, _ = source
    archive = tmp_path / "backup.tar"
    _export(capsys, model_dir, data, archive)
    bad = tmp_path / "bad.tar"
    if damage == "flipped_byte":
        _tamper(archive, bad)
        expected = "archive_corrupt"
    elif damage == "truncated":
        bad.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
        expected = "archive_truncated"
    else:
        bad.write_bytes(b"hello, I am not a tar file" * 100)
        expected = "archive_truncated"
    target = tmp_path / "target"
    with running(model_dir, target) as c:  # a deployment that exists (bootstrap key) but holds no portfolio
        keys_before = c.get("/v1/keys", headers=ADMIN).json()
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(target), "import", str(bad))
    assert code == 1
    assert f"error: {expected}:" in err
    assert not list((target / "originals").rglob("*.bin")) if (target / "originals").exists() else True
    with running(model_dir, target) as c:
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 0
        assert c.get("/v1/keys", headers=ADMIN).json() == keys_before
        assert c.get("/v1/audit", headers=ADMIN).json()["total"] == 0


def test_import_refuses_a_deployment_that_is_not_empty(model_dir: Path, tmp_path: Path, source, capsys) -> None:
    data, _, _, _ = source
    archive = tmp_path / "backup.tar"
    _export(capsys, model_dir, data, archive)
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "import", str(archive))
    assert code == 1 and "error: target_not_empty:" in err
    with running(model_dir, data) as c:
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 3
        assert sum(a["works"] for a in c.get("/v1/artists", headers=ADMIN).json()["items"]) == 9


def test_enrol_folder_tree_with_progress_and_rerun(model_dir: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    for artist, seeds in {"rembrandt": [1, 2, 3], "hals": [4, 5]}.items():
        (root / artist).mkdir(parents=True)
        for s in seeds:
            (root / artist / f"{s}.png").write_bytes(png(s))
    (root / "hals" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "hals" / "notes.txt").write_text("ignored: not an image suffix")
    (root / "bad id!").mkdir()
    (root / "bad id!" / "x.png").write_bytes(png(9))
    data = tmp_path / "data"
    argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "enrol", str(root)]
    code, doc, err = cli(capsys, *argv)
    assert code == 1  # two files refused
    assert doc["artists_created"] == 2 and doc["enrolled"] == 5 and doc["skipped_existing"] == 0
    assert sorted((Path(r["file"]).name, r["code"]) for r in doc["refused"]) == [
        ("broken.png", "corrupt_image"),
        ("x.png", "invalid_artist_id"),
    ]
    assert "enrol" in err and "image" in err  # the tqdm bar
    code, doc, _ = cli(capsys, *argv)
    assert doc["enrolled"] == 0 and doc["skipped_existing"] == 5 and doc["artists_created"] == 0
    with running(model_dir, data) as c:
        works = c.get("/v1/artists/rembrandt/works", headers=ADMIN).json()
        assert sorted(w["filename"] for w in works["works"]) == ["1.png", "2.png", "3.png"]
        assert error_code(c.get("/v1/artists/bad%20id!", headers=ADMIN)) == "unknown_artist"


def test_round_trip_on_postgresql(model_dir: Path, tmp_path: Path, pg_url: str, capsys) -> None:  # noqa: F811
    """SQLite → archive → PostgreSQL → archive: the second archive holds the very same records."""
    data = tmp_path / "source"
    with running(model_dir, data) as c:
        enrol(c, "vermeer", [1, 2, 3])
        c.post(
            "/v1/artists",
            json={"id": "hals", "name": "Frans Hals", "meta": {"born": 1582, "tags": ["x"]}},
            headers=ADMIN,
        )
        key = new_key(c, "desk", "verify")
        first = c.post("/v1/verify", files=one(4), data={"artist_id": "vermeer"}, headers={"X-API-Key": key}).json()
    archive = tmp_path / "a.tar"
    _export(capsys, model_dir, data, archive)
    target = tmp_path / "pg"
    argv = ["--model-dir", str(model_dir), "--data-dir", str(target), "--database-url", pg_url]
    code, doc, err = cli(capsys, *argv, "import", str(archive))
    assert code == 0 and doc["reembedded"] == 0, err
    again = tmp_path / "b.tar"
    code, _, err = cli(capsys, *argv, "export", "--out", str(again), "--no-progress")
    assert code == 0, err
    with tarfile.open(archive) as a, tarfile.open(again) as b:
        for name in ("artists.jsonl", "works.jsonl", "embeddings.jsonl", "keys.jsonl", "audit.jsonl"):
            assert a.extractfile(name).read() == b.extractfile(name).read(), name  # type: ignore[union-attr]
    with running(model_dir, target, database_url=pg_url) as c:
        r = c.post("/v1/verify", files=one(4), data={"artist_id": "vermeer"}, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json() == first
