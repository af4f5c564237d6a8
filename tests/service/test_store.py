"""service/storage/db.py + service/storage/store.py: the SQL repository — SQLite settings, artists, works, embeddings
by model, the version row every write bumps, and one transaction per enrolment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import text

from service.api.errors import status_of
from service.errors import ServiceError
from service.serving.model import Model
from service.storage.db import make_engine, open_database, sqlite_url
from service.storage.store import Store
from tests.service.galleries import new_work


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(open_database(sqlite_url(tmp_path / "brushprint.db")))
    s.create_artist("monet", "Claude Monet", {"born": 1840})
    s.create_artist("vangogh", "Vincent van Gogh", {})
    return s


def _path(sha256: str, data: bytes) -> str:
    return f"originals/{sha256[:2]}/{sha256}.bin"


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    db: SqlEngine = make_engine(sqlite_url(tmp_path / "x.db"))
    with db.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_artists_crud(store: Store) -> None:
    a = store.get_artist("monet")
    assert (a.name, a.meta, a.works) == ("Claude Monet", {"born": 1840}, 0)
    assert a.created.utcoffset() is not None  # aware UTC on every backend, SQLite included
    with pytest.raises(ServiceError) as e:
        store.create_artist("monet", "again", {})
    assert (status_of(e.value), e.value.code) == (409, "artist_exists")
    items, total = store.list_artists(0, 1)
    assert total == 2 and [i.id for i in items] == ["monet"]
    items, total = store.list_artists(1, 10)
    assert [i.id for i in items] == ["vangogh"]
    store.delete_artist("vangogh")
    with pytest.raises(ServiceError) as e:
        store.get_artist("vangogh")
    assert (status_of(e.value), e.value.code) == (404, "unknown_artist")
    with pytest.raises(ServiceError):
        store.delete_artist("vangogh")


def test_unknown_artist_and_work(store: Store, model: Model) -> None:
    with pytest.raises(ServiceError) as e:
        store.add_works("nobody", model.model_id, [new_work(model, 1)], _path)
    assert e.value.code == "unknown_artist"
    _, (w,) = store.add_works("monet", model.model_id, [new_work(model, 1)], _path)
    with pytest.raises(ServiceError) as e:
        store.delete_work("vangogh", w.id)  # exists, but not in this portfolio
    assert (status_of(e.value), e.value.code) == (404, "unknown_work")
    with pytest.raises(ServiceError) as e:
        store.list_works("nobody")
    assert e.value.code == "unknown_artist"
    # NUL is never stored, so never found (PostgreSQL would fail the statement instead)
    with pytest.raises(ServiceError) as e:
        store.get_artist("a\x00b")
    assert e.value.code == "unknown_artist"
    with pytest.raises(ServiceError) as e:
        store.delete_work("monet", "a\x00b")
    assert e.value.code == "unknown_work"


def test_work_path_is_found_only_through_the_works_artist(store: Store, model: Model) -> None:
    item = new_work(model, 3)
    _, (w,) = store.add_works("monet", model.model_id, [item], _path)
    v = store.version()
    assert store.work_path("monet", w.id) == _path(item.sha256, item.data) and store.version() == v  # a read
    for artist, work, code in [
        ("vangogh", w.id, "unknown_work"),  # exists, but not in this portfolio
        ("nobody", w.id, "unknown_artist"),
        ("nobody", "a\x00b", "unknown_artist"),  # the artist is judged first
        ("monet", "no-such-work", "unknown_work"),
        ("monet", "a\x00b", "unknown_work"),
        ("a\x00b", w.id, "unknown_artist"),
    ]:
        with pytest.raises(ServiceError) as e:
            store.work_path(artist, work)
        assert (status_of(e.value), e.value.code) == (404, code), (artist, work)


def test_every_write_bumps_the_version(store: Store, model: Model) -> None:
    v0 = store.version()
    v1, works = store.add_works("monet", model.model_id, [new_work(model, 1), new_work(model, 2)], _path)
    assert v1 == v0 + 1 == store.version()
    removed = store.delete_work("monet", works[0].id)
    assert removed.version == v1 + 1 and removed.work_ids == [works[0].id]
    assert removed.paths == [_path(works[0].sha256, b"")]
    assert store.add_embeddings("other@1", [(works[1].id, np.zeros(model.embedding_dim, np.float32))]) == v1 + 2
    assert store.prune(model.model_id) == (v1 + 3, 1)
    assert store.delete_artist("monet").version == v1 + 4 == store.version()


def test_enrolment_is_one_transaction(store: Store, model: Model) -> None:
    saved: list[str] = []

    def save_then_fail(sha256: str, data: bytes) -> str:
        if len(saved) == 2:
            raise OSError("disk full")
        saved.append(sha256)
        return _path(sha256, data)

    version = store.version()
    with pytest.raises(OSError, match="disk full"):
        store.add_works("monet", model.model_id, [new_work(model, s) for s in range(3)], save_then_fail)
    assert len(saved) == 2  # the originals are saved inside the transaction, before the commit
    assert store.list_works("monet") == [] and store.version() == version  # the bump was rolled back too


def test_snapshot_holds_one_models_embeddings_in_row_order(store: Store, model: Model) -> None:
    items = [new_work(model, s) for s in range(3)]
    _, works = store.add_works("monet", model.model_id, items, _path)
    snap = store.snapshot(model.model_id, model.embedding_dim)
    assert snap.work_ids == [w.id for w in works] and snap.artist_ids == ["monet"] * 3 and snap.missing == 0
    np.testing.assert_array_equal(snap.embeddings, np.stack([it.embedding for it in items]))
    other = store.snapshot("other@1", model.embedding_dim)
    assert other.work_ids == [] and other.missing == 3
    assert [w for w, _ in store.lacking_embeddings("other@1")] == sorted(w.id for w in works)
    assert store.unreferenced([_path(items[0].sha256, b""), "originals/zz/gone.bin"]) == ["originals/zz/gone.bin"]
