"""Export is one consistent snapshot (service/ops/backup.py `export_archive`, service/storage/db.py
`snapshot_session`), on SQLite and PostgreSQL: a commit landing between the export's reads is not in the archive,
a work deleted after the snapshot is left out and named, a missing original of an existing work is refused, and
exports taken while enrolment and deletion go on in other threads all restore."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.ops import backup
from service.ops.backup import BackupError, export_archive
from service.serving.model import Model
from service.storage.db import open_database, snapshot_session, sqlite_url
from service.storage.gallery import Gallery
from tests.service.backups import cli, gallery, picture_work, read_archive, restore_into, target

ARTISTS = ["a0", "a1", "a2", "a3"]


def live(model: Model, data: Path, database_url: str | None, works: int = 3) -> tuple[sa.Engine, Gallery]:
    """A deployment with four artists of `works` works each, written through the storage layer."""
    db = open_database(database_url or sqlite_url(data / "brushprint.db"))
    g = gallery(model, data, db)
    for i, a in enumerate(ARTISTS):
        g.create_artist(a, a.upper())
        g.add_works(a, [picture_work(model, 100 * i + j) for j in range(works)])
    return db, g


def restores(model: Model, model_dir: Path, archive: Path, where: Path) -> dict:
    """Restore `archive` into an empty SQLite deployment; the restored gallery must load whole, and exporting it
    again must give the very same records."""
    with target(model, model_dir, where, None) as t:
        result = restore_into(t, archive)
        g = t.rebuild().gallery
        assert len(g) == result.counts["works"] and g.missing == 0
        again = export_archive(t.db, where, where.parent / f"{where.name}-again.tar")
    a, originals, _ = read_archive(archive)
    b, _, _ = read_archive(again.path)
    for table in ("artists", "works", "embeddings"):
        assert a[table] == b[table], table
    assert {w["sha256"] for w in a["works"]} == set(originals)
    return a


def test_snapshot_session_isolation(model: Model, tmp_path: Path, database_url: str | None) -> None:
    db, g = live(model, tmp_path, database_url)
    with snapshot_session(db) as s:
        if db.dialect.name == "postgresql":
            assert s.execute(sa.text("SHOW transaction_isolation")).scalar() == "repeatable read"
            assert s.execute(sa.text("SHOW transaction_read_only")).scalar() == "on"
        n = s.execute(sa.text("SELECT count(*) FROM works")).scalar()
        g.add_works("a0", [picture_work(model, 500)])  # committed by another connection meanwhile
        assert s.execute(sa.text("SELECT count(*) FROM works")).scalar() == n
    with db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM works")).scalar() == n + 1
    db.dispose()


def test_a_commit_between_the_exports_reads_is_not_in_it(
    model: Model, model_dir: Path, tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's failure made certain: an enrolment commits after the works were read and before the embeddings
    were. One snapshot sees neither its work nor its embedding."""
    db, g = live(model, tmp_path / "live", database_url)
    version = g.store.version()
    writer = gallery(model, tmp_path / "live", db)
    real = backup._embedding_lines

    def enrol_then_read(s):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(backup, "_embedding_lines", real)  # once
        writer.create_artist("late", "Late")
        writer.add_works("late", [picture_work(model, 900)])
        writer.add_works("a1", [picture_work(model, 901)])
        return real(s)

    monkeypatch.setattr(backup, "_embedding_lines", enrol_then_read)
    r = export_archive(db, tmp_path / "live", tmp_path / "a.tar")
    assert r.counts["works"] == r.counts["embeddings"] == 12 and r.counts["artists"] == 4
    assert r.gallery_version == version and r.left_out == []
    rec = restores(model, model_dir, r.path, tmp_path / "t")
    assert "late" not in {a["id"] for a in rec["artists"]}
    assert g.store.version() > version  # the writes did commit, after the snapshot
    db.dispose()


def test_a_work_deleted_after_the_snapshot_is_left_out(
    model: Model, model_dir: Path, tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted after the snapshot, before its original was copied: its file is gone, so the work and its
    embedding are left out, named in the result and the manifest; the archive restores."""
    db, g = live(model, tmp_path / "live", database_url)
    gone = g.list_works("a2")[1]
    real = backup.read_snapshot

    def then_delete(engine):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(backup, "read_snapshot", real)  # once
        snap = real(engine)
        gallery(model, tmp_path / "live", db).delete_work("a2", gone.id)
        return snap

    monkeypatch.setattr(backup, "read_snapshot", then_delete)
    r = export_archive(db, tmp_path / "live", tmp_path / "a.tar")
    assert r.left_out == [gone.id] and r.counts["works"] == r.counts["embeddings"] == 11
    rec = restores(model, model_dir, r.path, tmp_path / "t")
    assert gone.id not in {w["id"] for w in rec["works"]}
    assert read_archive(r.path)[2]["left_out"] == [gone.id]
    db.dispose()


def test_an_existing_works_missing_original_is_refused(model_dir: Path, model: Model, tmp_path: Path, capsys) -> None:
    """A file missing while its work still exists is data loss: the export says so (exit 1) and writes nothing."""
    data = tmp_path / "live"
    db, g = live(model, data, None)
    lost = g.list_works("a3")[0]
    (data / g.originals.relpath(lost.sha256)).unlink()
    with pytest.raises(BackupError) as info:
        export_archive(db, data, tmp_path / "a.tar")
    assert info.value.code == "original_missing"
    db.dispose()
    out = tmp_path / "b.tar"
    code, _, err = cli(capsys, "--model-dir", str(model_dir), "--data-dir", str(data), "export", "--out", str(out))
    assert code == 1 and "error: original_missing:" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "a.tar").exists()


def test_exports_under_concurrent_writes_all_restore(
    model: Model, model_dir: Path, tmp_path: Path, database_url: str | None
) -> None:
    """Two threads write without pause — one enrols pairs of works, one deletes works and now and then a whole
    artist (re-creating it) — while exports are taken one after another. Every export succeeds, and every
    archive restores into an empty deployment whole."""
    data = tmp_path / "live"
    db, _ = live(model, data, database_url, works=12)
    stop = threading.Event()
    done = {"enrolled": 0, "deleted": 0, "artists_deleted": 0}
    errors: list[BaseException] = []

    seeds = iter(range(10_000, 10**9, 2))

    def enrolling() -> None:
        g = gallery(model, data, db)
        while not stop.is_set():
            seed = next(seeds)
            a = ARTISTS[seed // 2 % len(ARTISTS)]
            try:
                g.add_works(a, [picture_work(model, seed), picture_work(model, seed + 1)])
                done["enrolled"] += 2
            except Exception as e:  # the artist was deleted meanwhile: fine, anything else is not
                if getattr(e, "code", None) != "unknown_artist":
                    errors.append(e)
            time.sleep(0.002)

    def deleting() -> None:
        g, rng = gallery(model, data, db), random.Random(7)
        while not stop.is_set():
            a = rng.choice(ARTISTS)
            try:
                if rng.random() < 0.1:
                    g.delete_artist(a)
                    g.create_artist(a, a.upper())
                    done["artists_deleted"] += 1
                elif works := g.list_works(a):
                    g.delete_work(a, rng.choice(works).id)
                    done["deleted"] += 1
            except Exception as e:
                if getattr(e, "code", None) not in ("unknown_artist", "unknown_work"):
                    errors.append(e)
            time.sleep(0.002)

    threads = [threading.Thread(target=f, daemon=True) for f in (enrolling, enrolling, deleting)]
    for t in threads:
        t.start()
    results, writes = [], []  # each export, and the writes that landed while it ran
    try:
        for i in range(10):
            before = sum(done.values())
            results.append(export_archive(db, data, tmp_path / f"a{i}.tar"))
            writes.append(sum(done.values()) - before)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    db.dispose()
    assert not errors, errors
    print("writes during each export", writes, done, [len(r.left_out) for r in results])
    assert sum(1 for w in writes if w) >= 6 and done["deleted"] and done["enrolled"], (writes, done)
    for i, r in enumerate(results):
        rec = restores(model, model_dir, r.path, tmp_path / f"t{i}")
        assert len(rec["works"]) == r.counts["works"] and not set(r.left_out) & {w["id"] for w in rec["works"]}
