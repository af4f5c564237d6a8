"""Backup and restore (`python -m service export|import|drill`, service/ops/backup.py, service/ops/drill.py) and bulk
enrolment (`enrol`): round trips with identical answers, the restore drill, and archives that are damaged or
tampered with and re-sealed — refused before anything is written, on SQLite and PostgreSQL. The snapshot under
concurrent writes is tests/service/test_backup_snapshot.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.ops import backup
from service.ops.backup import BackupError
from service.serving.model import Model
from service.storage.db import open_database, sqlite_url
from service.storage.keys import KeyStore
from tests.service.apitools import ADMIN, OPERATOR, enrol, error_code, new_key, one, pair, running
from tests.service.backups import cli, read_archive, reseal, restore_into, state, target
from tests.service.conftest import png

SEEDS = {"vermeer": [1, 2, 3, 4], "hals": [11, 12, 13], "leyster": [21, 22]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRUSHPRINT_"):
            monkeypatch.delenv(name)


def answers(client, key: str) -> list[dict]:
    """A fixed set of compare, verify and identify requests, and their answers."""
    h = {"X-API-Key": key}
    out = []
    for a, b in ((1, 12), (2, 3), (21, 40)):
        r = client.post("/v1/compare", files=pair(a, b), headers=h)
        assert r.status_code == 200, r.text
        out.append(r.json())
    for artist in SEEDS:
        for q in (1, 12, 40):
            r = client.post("/v1/verify", files=one(q), data={"artist_id": artist}, headers=h)
            assert r.status_code == 200, r.text
            out.append(r.json())
    r = client.post("/v1/identify", files=one(22), data={"k": "3"}, headers=h)
    assert r.status_code == 200, r.text
    out.append(r.json())
    return out


def listing(client) -> dict:
    artists = client.get("/v1/artists", headers=ADMIN).json()
    works = {a["id"]: client.get(f"/v1/artists/{a['id']}/works", headers=ADMIN).json() for a in artists["items"]}
    listed = client.get("/v1/keys", headers=ADMIN).json()
    keys = sorted((k["name"], k["scope"], k["prefix"], k["revoked_at"]) for k in listed)
    audit = client.get("/v1/audit?limit=1000", headers=ADMIN).json()
    return {"artists": artists, "works": works, "keys": keys, "audit_total": audit["total"]}


def deployment(model_dir: Path, data: Path) -> tuple[str, list[dict], dict]:
    """Three artists, a verify key, a revoked key and some audit rows: (the verify key, answers, listing)."""
    with running(model_dir, data) as c:
        for artist, seeds in SEEDS.items():
            enrol(c, artist, seeds)
        work = c.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"][0]["id"]
        catalogue = {"title": "The Milkmaid", "date": "c. 1658", "inventory_number": "SK-A-2344"}
        assert c.patch(f"/v1/artists/vermeer/works/{work}", json=catalogue, headers=ADMIN).status_code == 200
        key = new_key(c, "desk", "verify")
        new_key(c, "old", "verify")
        assert c.delete("/v1/keys/old", headers=ADMIN).status_code in (200, 204)
        return key, answers(c, key), listing(c)


@pytest.fixture
def source(model_dir: Path, tmp_path: Path) -> tuple[Path, str, list[dict], dict]:
    data = tmp_path / "source"
    return (data, *deployment(model_dir, data))


@pytest.fixture(scope="module")
def archived(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of `deployment`, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("archived")
    deployment(model_dir, root / "data")
    engine = open_database(sqlite_url(root / "data" / "brushprint.db"))
    try:
        backup.export_archive(engine, root / "data", root / "backup.tar")
    finally:
        engine.dispose()
    return root / "backup.tar"


def _export(capsys, model_dir: Path, data: Path, out: Path) -> dict:
    code, doc, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "export", "--out", str(out))
    assert code == 0, err
    return doc


# ---- round trips and the restore drill ------------------------------------------------------------------------
def test_round_trip_gives_identical_answers(model_dir: Path, tmp_path: Path, source, capsys) -> None:
    data, key, before, snapshot = source
    archive = tmp_path / "backup.tar"
    doc = _export(capsys, model_dir, data, archive)
    assert doc["counts"]["artists"] == 3 and doc["counts"]["works"] == 9 and doc["originals"] == 9
    assert doc["counts"]["keys"] == 3  # bootstrap admin, desk, old (revoked)
    assert doc["counts"]["audit"] == len(before) and doc["left_out"] == []
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        keys = tar.extractfile("keys.jsonl").read().decode()  # type: ignore[union-attr]
    assert names[-1] == "manifest.json"
    assert key not in keys and "key_hash" in keys  # hashes only, never a key

    restored = tmp_path / "target"
    code, doc, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(restored), "import", str(archive))
    assert code == 0, err
    assert doc["reembedded"] == 0 and doc["counts"]["works"] == 9 and doc["references"] == 9
    with running(model_dir, restored) as c:
        again = listing(c)
        assert again["artists"] == snapshot["artists"]
        assert again["works"] == snapshot["works"]
        assert again["works"]["vermeer"]["works"][0]["title"] == "The Milkmaid"  # catalogue entries travel
        assert again["keys"] == snapshot["keys"]
        assert again["audit_total"] == snapshot["audit_total"]
        after = answers(c, key)  # the archived verify key works on the restored deployment
    assert after == before


@pytest.mark.parametrize("scratch", ["temporary", "postgresql"])
def test_restore_drill_command(
    model_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, request, scratch: str
) -> None:
    """`python -m service drill`: export a live deployment, restore it into an empty one, ask both the same fixed
    questions. Six artists with two or three works each, so the gallery's own calibration answers too."""
    data = tmp_path / "live"
    with running(model_dir, data, gallery_calibration_min_artists=5) as c:
        for i, artist in enumerate(["avercamp", "bol", "cuyp", "dou", "eeckhout", "flinck"]):
            enrol(c, artist, [100 + 10 * i + j for j in range(2 + i % 2)])
    argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "drill", "--out", str(tmp_path / "d.tar")]
    if scratch == "postgresql":
        argv += ["--target", str(tmp_path / "scratch"), "--target-database-url", request.getfixturevalue("pg_url")]
    monkeypatch.setenv("BRUSHPRINT_GALLERY_CALIBRATION_MIN_ARTISTS", "5")
    code, doc, err = cli(capsys, *argv, "--no-progress")
    assert code == 0, (err, doc)
    # per artist: 2 compares (with the next artist's first work, with its own second), 3 verifies, 1 identify
    assert doc["questions"] == 6 * 6 and doc["identical"] == 36 and doc["differences"] == []
    assert doc["live_moved"] is False and doc["counts"]["works"] == 15
    assert (tmp_path / "d.tar").is_file()  # the drill's archive is a backup like any other
    if scratch == "temporary":
        assert not list(Path(tempfile.gettempdir()).glob("brushprint-drill-*"))  # removed afterwards


def _dealer_a(c) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A collection `dealer-a` holding SEEDS (made by the operator); the headers of its first admin key."""
    made = c.post("/v1/collections", json={"id": "dealer-a", "name": "Dealer A"}, headers=OPERATOR).json()
    a = {"X-API-Key": made["key"]["key"]}
    for artist, seeds in SEEDS.items():
        assert c.post("/v1/artists", json={"id": artist, "name": artist}, headers=a).status_code == 201
        files = [("image", (f"{s}.png", png(s), "image/png")) for s in seeds]
        assert c.post(f"/v1/artists/{artist}/works", files=files, headers=a).status_code == 201
    return a


def test_restore_drill_of_one_collection(model_dir: Path, tmp_path: Path, capsys) -> None:
    """`drill --collection C` asks inside C, on both sides: the default collection's works (the same pictures,
    under the same artist id) neither join the archive nor change an answer."""
    data = tmp_path / "live"
    with running(model_dir, data) as c:
        _dealer_a(c)
        enrol(c, "vermeer", [1, 50, 51])  # default: one of dealer-a's pictures among others
    argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "drill", "--out", str(tmp_path / "d.tar")]
    code, doc, err = cli(capsys, *argv, "--collection", "dealer-a", "--no-progress")
    assert code == 0, (err, doc)
    assert doc["collection"] == "dealer-a" and doc["counts"]["works"] == 9 and doc["counts"]["keys"] == 1
    assert doc["questions"] == doc["identical"] > 0 and doc["differences"] == [] and doc["live_moved"] is False
    code, _, err = cli(capsys, *argv, "--collection", "nowhere", "--no-progress")
    assert code == 1 and "unknown_collection" in err


def test_restore_drill_sees_a_restore_that_answers_differently(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drill compares real answers: a restore that renames one artist changes every answer that names it (identify's
    candidates, and compare's and verify's `same_work_as` and summaries where a question's picture is that artist's
    work), and no other."""
    from service.config import Settings
    from service.ops.drill import run_drill

    data = tmp_path / "live"
    with running(model_dir, data) as c:
        enrol(c, "vermeer", [1, 2])
        enrol(c, "hals", [11, 12])
    real = backup._insert_rows

    def renaming(s, rec, store, result, new_ids) -> None:  # type: ignore[no-untyped-def]
        real(s, rec, store, result, new_ids)
        s.flush()
        s.get(backup.ArtistRow, (result.collection, "hals")).name = "Someone Else"

    monkeypatch.setattr(backup, "_insert_rows", renaming)
    r = run_drill(Settings(model_dir=model_dir, data_dir=data, providers="cpu"), tmp_path / "d.tar")
    assert not r.passed and not r.live_moved
    assert r.differences and "identify" in {d["question"].split()[0] for d in r.differences}
    assert all("Hals" in json.dumps(d["live"]) and "Someone Else" in json.dumps(d["restored"]) for d in r.differences)
    assert r.identical == r.questions - len(r.differences) > 0


def test_import_into_another_model_reembeds(
    model_dir: Path, other_model: Model, tmp_path: Path, source, capsys
) -> None:
    data, key, before, _ = source
    archive = tmp_path / "backup.tar"
    _export(capsys, model_dir, data, archive)
    restored = tmp_path / "target"
    other = str(other_model.model_dir)
    code, doc, err = cli(capsys, "--model-dir", other, "--data-dir", str(restored), "import", str(archive))
    assert code == 0, err
    assert doc["reembedded"] == 9 and doc["references"] == 9 and doc["model"] == other_model.model_id
    assert doc["archive_models"] != [other_model.model_id]
    with running(Path(other), restored) as c:
        assert c.get("/readyz").status_code == 200
        after = answers(c, key)
    assert {a["model"] for a in after[:-1]} == {other_model.model_id}
    assert [a.get("portfolio_size") for a in after[:-1]] == [a.get("portfolio_size") for a in before[:-1]]


# ---- damaged archives, and targets that cannot take one ------------------------------------------------------
def _tamper(archive: Path, out: Path) -> None:
    """Flip one byte inside the first original's data."""
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        m = next(m for m in tar.getmembers() if m.name.startswith("originals/"))
    raw[m.offset_data + m.size // 2] ^= 0xFF
    out.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "not_an_archive"])
def test_damaged_archive_is_refused_and_changes_nothing(
    model_dir: Path, tmp_path: Path, archived: Path, capsys, damage: str
) -> None:
    bad = tmp_path / "bad.tar"
    if damage == "flipped_byte":
        _tamper(archived, bad)
        expected = "archive_corrupt"
    elif damage == "truncated":
        bad.write_bytes(archived.read_bytes()[: archived.stat().st_size * 2 // 3])
        expected = "archive_truncated"
    else:
        bad.write_bytes(b"hello, I am not a tar file" * 100)
        expected = "archive_truncated"
    restored = tmp_path / "target"
    with running(model_dir, restored) as c:  # a deployment that exists (bootstrap key) but holds no portfolio
        keys_before = c.get("/v1/keys", headers=ADMIN).json()
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(restored), "import", str(bad))
    assert code == 1
    assert f"error: {expected}:" in err
    assert not list((restored / "originals").rglob("*.bin")) if (restored / "originals").exists() else True
    with running(model_dir, restored) as c:
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 0
        assert c.get("/v1/keys", headers=ADMIN).json() == keys_before
        assert c.get("/v1/audit", headers=ADMIN).json()["total"] == 0


def test_import_refuses_a_deployment_that_is_not_empty(model_dir: Path, source, archived: Path, capsys) -> None:
    data = source[0]
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "import", str(archived))
    assert code == 1 and "error: target_not_empty:" in err
    with running(model_dir, data) as c:
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 3
        assert sum(a["works"] for a in c.get("/v1/artists", headers=ADMIN).json()["items"]) == 9


# ---- tampered archives, re-sealed so that every checksum matches ----------------------------------------------
Records = dict[str, list[dict[str, Any]]]
Originals = dict[str, bytes]


def _vector(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def _rename_artist(rec: Records, old: str, new: str) -> None:
    for table, fieldname in (("artists", "id"), ("works", "artist_id"), ("audit", "artist_id")):
        for r in rec[table]:
            if r[fieldname] == old:
                r[fieldname] = new


def _first_work_id(rec: Records, new: str) -> None:
    old = rec["works"][0]["id"]
    rec["works"][0]["id"] = new
    for e in rec["embeddings"]:
        if e["work_id"] == old:
            e["work_id"] = new


def _not_an_image(rec: Records, originals: Originals) -> None:
    w = rec["works"][0]
    junk = b"this is no picture, only bytes. " * 8
    sha = backup.hashlib.sha256(junk).hexdigest()
    del originals[w["sha256"]]
    originals[sha] = junk
    w["sha256"], w["size_bytes"] = sha, len(junk)


def _all_dims(rec: Records, dim: int) -> None:
    for e in rec["embeddings"]:
        e["dim"], e["vector"] = dim, _vector([0.5] * dim)


def _second_active_key(rec: Records) -> None:
    active = next(k for k in rec["keys"] if k["revoked_at"] is None)
    rec["keys"].append({**active, "key_hash": "ab" * 32, "prefix": "bp_other"})


TAMPERED: dict[str, tuple[Any, str]] = {
    # case: (edit(records, originals), a fragment the refusal must name)
    "artist_id_path": (lambda r, o: _rename_artist(r, "hals", "../../x y"), "invalid_artist_id"),
    "artist_name_blank": (lambda r, o: r["artists"][0].update(name="   "), "invalid_name"),
    "artist_name_untrimmed": (lambda r, o: r["artists"][0].update(name=" Hals "), "invalid_name"),
    "artist_meta_list": (lambda r, o: r["artists"][0].update(meta=[1, 2]), "meta"),
    "nul_in_name": (lambda r, o: r["artists"][0].update(name="Ha\x00ls"), "NUL"),
    "bad_time": (lambda r, o: r["artists"][0].update(created="yesterday"), "created"),
    "unknown_field": (lambda r, o: r["works"][0].update(path="/etc/passwd"), "path"),
    "work_id_not_uuid": (lambda r, o: _first_work_id(r, "w1"), "not one the service makes"),
    "filename_path": (lambda r, o: r["works"][0].update(filename="../x.png"), "file name"),
    "size_mismatch": (lambda r, o: r["works"][0].update(size_bytes=r["works"][0]["size_bytes"] + 1), "says"),
    "size_bool": (lambda r, o: r["works"][0].update(size_bytes=True), "size_bytes"),
    "catalogue_control_character": (lambda r, o: r["works"][0].update(title="The\x07Milkmaid"), "invalid_catalogue"),
    "catalogue_too_long": (lambda r, o: r["works"][0].update(date="1" * 65), "invalid_catalogue"),
    "catalogue_untrimmed": (lambda r, o: r["works"][0].update(title=" The Milkmaid "), "trimmed"),
    "catalogue_not_text": (lambda r, o: r["works"][0].update(title=1658), "title"),
    "work_of_nobody": (lambda r, o: r["works"][0].update(artist_id="nobody"), "not in the archive"),
    "embedding_of_nothing": (lambda r, o: r["embeddings"][0].update(work_id=str(uuid.uuid4())), "not in the archive"),
    "duplicate_artist": (lambda r, o: r["artists"].append(r["artists"][0]), "artist id"),
    "duplicate_work_id": (lambda r, o: r["works"].append({**r["works"][0], "artist_id": "hals"}), "work id"),
    "duplicate_work": (lambda r, o: r["works"].append({**r["works"][0], "id": str(uuid.uuid4())}), "(artist, sha256)"),
    "duplicate_embedding": (lambda r, o: r["embeddings"].append(r["embeddings"][0]), "embedding (work, model)"),
    "duplicate_key": (lambda r, o: r["keys"].append({**r["keys"][1], "name": "other"}), "key hash"),
    "two_active_keys_one_name": (lambda r, o: _second_active_key(r), "active key name"),
    "key_scope": (lambda r, o: r["keys"][0].update(scope="root"), "scope"),
    "operator_key": (lambda r, o: r["keys"][0].update(scope="operator"), "not one of a collection's"),
    "audit_too_long": (lambda r, o: r["audit"][0].update(key_name="k" * 65), "key_name"),
    "audit_nan": (lambda r, o: r["audit"][0].update(score=float("nan")), "score"),
    "one_embedding_dim_4": (lambda r, o: r["embeddings"][0].update(dim=4, vector=_vector([1, 0, 0, 0])), "dimension"),
    "every_embedding_dim_4": (lambda r, o: _all_dims(r, 4), "4-d embedding"),
    "dim_lies": (lambda r, o: r["embeddings"][0].update(vector=_vector([1, 0, 0, 0])), "16 bytes"),
    "vector_nan": (
        lambda r, o: r["embeddings"][0].update(vector=_vector([float("nan")] * r["embeddings"][0]["dim"])),
        "not finite",
    ),
    "orphan_original": (lambda r, o: o.update({backup.hashlib.sha256(png(77)).hexdigest(): png(77)}), "no work"),
    "original_not_an_image": (_not_an_image, "cannot be read"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_archive_is_refused_and_changes_nothing(
    model: Model, model_dir: Path, tmp_path: Path, archived: Path, database_url: str | None, case: str
) -> None:
    edit, fragment = TAMPERED[case]
    bad = reseal(archived, tmp_path / "bad.tar", edit)
    with target(model, model_dir, tmp_path / "target", database_url) as t:
        KeyStore(t.db).create("desk", "verify", "default")
        before = state(t.db, tmp_path / "target")
        with pytest.raises(BackupError) as info:
            restore_into(t, bad)
        assert info.value.code == "archive_invalid", info.value.message
        assert fragment in info.value.message, info.value.message
        assert state(t.db, tmp_path / "target") == before
        good = restore_into(t, archived)  # and the same target still takes a good archive
        assert good.counts["works"] == 9 and len(t.rebuild().view("default").gallery) == 9


def test_resealed_unchanged_archive_is_accepted(tmp_path: Path, archived: Path) -> None:
    """The re-sealing itself is not what the tampered cases are refused for."""
    same = reseal(archived, tmp_path / "same.tar", lambda r, o: None)
    assert backup.check_archive(same).records.counts() == backup.check_archive(archived).records.counts()


def test_refused_import_leaves_a_deployment_that_serves_and_imports(
    model_dir: Path, tmp_path: Path, archived: Path, database_url: str | None, capsys
) -> None:
    """The hostile probe's case through the CLI: an archive re-sealed with every embedding 4-d. Refused (exit 1),
    the deployment starts and answers as before, and a good archive then imports into it."""
    bad = reseal(archived, tmp_path / "bad.tar", lambda r, o: _all_dims(r, 4))
    data = tmp_path / "target"
    extra = {"database_url": database_url} if database_url else {}
    with running(model_dir, data, **extra) as c:  # (no scoring before: its audit row would make it not empty)
        key = new_key(c, "counter", "verify")
        ready = c.get("/readyz").json()
        keys_before = c.get("/v1/keys", headers=ADMIN).json()
    argv = ["--model-dir", str(model_dir), "--data-dir", str(data)]
    argv += ["--database-url", database_url] if database_url else []
    code, doc, err = cli(capsys, *argv, "import", str(bad), "--no-progress")
    assert code == 1 and doc == {} and "error: archive_invalid:" in err and "4-d embedding" in err
    assert "Traceback" not in err
    with running(model_dir, data, **extra) as c:
        assert c.get("/readyz").json() == ready and ready["ready"] is True
        assert c.get("/v1/artists", headers=ADMIN).json()["total"] == 0
        assert c.get("/v1/keys", headers=ADMIN).json() == keys_before
    code, doc, err = cli(capsys, *argv, "import", str(archived), "--no-progress")
    assert code == 0 and doc["references"] == 9, err
    with running(model_dir, data, **extra) as c:
        # a painting not enrolled: judged against all four works (a copy of one would be judged by the others)
        r = c.post("/v1/verify", files=one(99), data={"artist_id": "vermeer"}, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json()["portfolio_size"] == 4


def test_export_refuses_to_write_an_archive_import_would_refuse(model_dir: Path, tmp_path: Path, capsys) -> None:
    """A database holding what the API would refuse (written around it) gives no archive that fails on the worst
    day: the export checks its archive as import will and keeps no file."""
    data = tmp_path / "data"
    with running(model_dir, data) as c:
        enrol(c, "vermeer", [1])
        engine = c.app.state.runtime.db
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE artists SET name = '   ' WHERE id = 'vermeer'")
    out = tmp_path / "x.tar"
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "export", "--out", str(out))
    assert code == 1 and "error: export_unrestorable:" in err and "invalid_name" in err
    assert not out.exists() and not list(tmp_path.glob(".x.tar*"))


def test_export_to_a_place_it_cannot_write_says_so(model_dir: Path, tmp_path: Path, archived: Path, capsys) -> None:
    """An --out that is a directory, or under a path that cannot be made, is refused by name (no traceback), and
    no partial file is left."""
    data = tmp_path / "data"
    with running(model_dir, data) as c:
        enrol(c, "vermeer", [1])
    (tmp_path / "dir.tar").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    for out in (tmp_path / "dir.tar", tmp_path / "file" / "a.tar"):
        argv = ["--model-dir", str(model_dir), "--data-dir", str(data), "export", "--out", str(out), "--no-progress"]
        code, doc, err = cli(capsys, *argv)
        assert code == 1 and doc == {} and "error: export_failed:" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dir.tar", "file"]
    assert not list((tmp_path / "dir.tar").iterdir())


@pytest.mark.parametrize(
    ("about", "fragment"),
    [
        (None, "does not name the collection"),
        ({"id": "Dealer A", "name": "x", "max_works": None, "max_bytes": None}, "invalid_collection_id"),
        ({"id": "a", "name": " ", "max_works": None, "max_bytes": None}, "invalid_name"),
        ({"id": "a", "name": "A", "max_works": -1, "max_bytes": None}, "invalid_quota"),
        ({"id": "a", "name": "A", "max_works": None}, "does not name the collection"),
    ],
)
def test_a_manifest_that_misnames_its_collection_is_refused(
    tmp_path: Path, archived: Path, about: dict | None, fragment: str
) -> None:
    """A version 2 manifest names its collection as the operator's create would take it; checked before any write."""
    bad = reseal(archived, tmp_path / "c.tar", lambda r, o: None, lambda m: m.update(collection=about))
    with pytest.raises(BackupError) as info:
        backup.check_archive(bad)
    assert info.value.code == "archive_invalid" and fragment in info.value.message, info.value.message


def test_an_archive_from_before_collections_imports_as_default(
    model: Model, model_dir: Path, tmp_path: Path, archived: Path
) -> None:
    """Format version 1 (one deployment, no collection in the manifest) is the `default` collection."""
    old = reseal(archived, tmp_path / "v1.tar", lambda r, o: None, lambda m: (m.pop("collection"), m.update(version=1)))
    assert backup.check_archive(old).collection.id == "default"
    with target(model, model_dir, tmp_path / "target", None) as t:
        r = restore_into(t, old)
        assert r.collection == "default" and len(t.rebuild().view("default").gallery) == r.counts["works"] == 9


def test_a_manifest_version_that_is_not_the_integer_is_refused(tmp_path: Path, archived: Path) -> None:
    """`True == 1` in Python: the format version must be the integer itself."""
    for version in (True, 1.0, "1", 2.0, 3):
        bad = reseal(archived, tmp_path / "v.tar", lambda r, o: None, lambda m, v=version: m.update(version=v))
        with pytest.raises(BackupError) as info:
            backup.check_archive(bad)
        assert info.value.code == "archive_version", (version, info.value.message)


# ---- bulk enrolment, and PostgreSQL ---------------------------------------------------------------------------
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


def test_round_trip_on_postgresql(model_dir: Path, tmp_path: Path, pg_url: str, capsys) -> None:
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
    restored = tmp_path / "pg"
    argv = ["--model-dir", str(model_dir), "--data-dir", str(restored), "--database-url", pg_url]
    code, doc, err = cli(capsys, *argv, "import", str(archive))
    assert code == 0 and doc["reembedded"] == 0, err
    again = tmp_path / "b.tar"
    code, _, err = cli(capsys, *argv, "export", "--out", str(again), "--no-progress")
    assert code == 0, err
    a, _, _ = read_archive(archive)
    b, _, _ = read_archive(again)
    assert a == b
    with running(model_dir, restored, database_url=pg_url) as c:
        r = c.post("/v1/verify", files=one(4), data={"artist_id": "vermeer"}, headers={"X-API-Key": key})
        assert r.status_code == 200 and r.json() == first


def test_export_and_import_one_collection(model_dir: Path, tmp_path: Path, capsys) -> None:
    """A collection's archive holds that collection only (no other collection's artists, works, originals, keys
    or audit rows, no operator key); it restores into a deployment that holds other collections, under its own id
    or another, without touching them, and answers there as it did; a collection that is not empty is refused."""
    data = tmp_path / "source"
    with running(model_dir, data) as c:
        a = _dealer_a(c)
        enrol(c, "vermeer", [50, 51])  # the default collection's own vermeer, other works
        hals = c.get("/v1/artists/hals/works", headers=a).json()["works"][0]["id"]
        assert (
            c.patch(f"/v1/artists/hals/works/{hals}", json={"title": "Laughing Cavalier"}, headers=a).status_code == 200
        )
        assert c.post("/v1/verify", files=one(1), data={"artist_id": "vermeer"}, headers=a).status_code == 200
        before = c.post("/v1/verify", files=one(2), data={"artist_id": "vermeer"}, headers=a).json()
    out = tmp_path / "dealer-a.tar"
    argv = ["--model-dir", str(model_dir), "--data-dir"]
    code, doc, err = cli(capsys, *argv, str(data), "export", "--collection", "dealer-a", "--out", str(out))
    assert code == 0, err
    assert doc["collection"] == "dealer-a" and doc["counts"]["works"] == 9 and doc["counts"]["keys"] == 1
    assert doc["counts"]["audit"] == 2 and doc["originals"] == 9
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    assert manifest["collection"] == {"id": "dealer-a", "name": "Dealer A", "max_works": None, "max_bytes": None}
    assert not {f"originals/{hashlib.sha256(png(s)).hexdigest()}.bin" for s in (50, 51)} & names

    target = tmp_path / "target"
    with running(model_dir, target) as c:
        enrol(c, "vermeer", [60])  # the target's default collection: untouched by the import
    code, doc, err = cli(capsys, *argv, str(target), "import", str(out), "--no-progress")
    assert code == 0 and doc["collection"] == "dealer-a", err
    code, doc, err = cli(capsys, *argv, str(target), "import", str(out), "--collection", "copy", "--no-progress")
    assert code == 0 and doc["collection"] == "copy" and doc["works_renumbered"] == 9, err
    code, _, err = cli(capsys, *argv, str(target), "import", str(out), "--collection", "copy", "--no-progress")
    assert code == 1 and "target_not_empty" in err
    with running(model_dir, target) as c:
        listed = {x["id"]: (x["works"], x["name"]) for x in c.get("/v1/collections", headers=OPERATOR).json()}
        assert listed == {"default": (1, "Default collection"), "dealer-a": (9, "Dealer A"), "copy": (9, "Dealer A")}
        after = c.post("/v1/verify", files=one(2), data={"artist_id": "vermeer"}, headers=a).json()
        assert (after["score"], after["portfolio_size"]) == (before["score"], before["portfolio_size"])
        assert c.get("/v1/audit", headers=a).json()["total"] == 3  # its two, and the verify just made
        titles = {w["id"]: w["title"] for w in c.get("/v1/artists/hals/works", headers=a).json()["works"]}
        assert titles[hals] == "Laughing Cavalier"  # the catalogue entry travels with the collection's archive
        assert [w["filename"] for w in c.get("/v1/artists/vermeer/works", headers=ADMIN).json()["works"]] == [
            "vermeer-60.png"
        ]


def test_import_into_a_collection_with_a_smaller_quota_is_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    """An existing (empty) collection keeps its own quota: an archive with more works or bytes than it allows is
    refused as an enrolment would be, and nothing is written; one that fits is restored."""
    data = tmp_path / "source"
    with running(model_dir, data) as c:
        _dealer_a(c)
    out = tmp_path / "dealer-a.tar"
    argv = ["--model-dir", str(model_dir), "--data-dir"]
    code, doc, err = cli(capsys, *argv, str(data), "export", "--collection", "dealer-a", "--out", str(out))
    assert code == 0 and doc["counts"]["works"] == 9, err
    size = sum(len(png(s)) for seeds in SEEDS.values() for s in seeds)

    target = tmp_path / "target"
    quotas = {"few": {"max_works": 8}, "small": {"max_bytes": size - 1}, "fits": {"max_works": 9, "max_bytes": size}}
    with running(model_dir, target) as c:
        for cid, quota in quotas.items():
            made = c.post("/v1/collections", json={"id": cid, "name": cid, **quota}, headers=OPERATOR)
            assert made.status_code == 201, made.text
    originals = target / "originals"
    before = sorted(p.name for p in originals.rglob("*")) if originals.exists() else []
    for cid, what in (
        ("few", "quota is 8: 9 more do not fit"),
        ("small", f"quota is {size - 1}: {size} more do not fit"),
    ):
        code, _, err = cli(capsys, *argv, str(target), "import", str(out), "--collection", cid, "--no-progress")
        assert code == 1 and "error: quota_exceeded:" in err and what in err, err
    after = sorted(p.name for p in originals.rglob("*")) if originals.exists() else []
    assert after == before  # no original left behind
    code, doc, err = cli(capsys, *argv, str(target), "import", str(out), "--collection", "fits", "--no-progress")
    assert code == 0 and doc["collection"] == "fits", err
    with running(model_dir, target) as c:
        listed = {x["id"]: x["works"] for x in c.get("/v1/collections", headers=OPERATOR).json()}
        assert listed == {"default": 0, "few": 0, "small": 0, "fits": 9}
