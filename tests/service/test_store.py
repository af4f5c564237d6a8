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
from service.storage.collections import Collections
from service.storage.db import make_engine, open_database, sqlite_url
from service.storage.schema import DEFAULT_COLLECTION as D
from service.storage.store import Committed, Store
from tests.service.galleries import new_work


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(open_database(sqlite_url(tmp_path / "brushprint.db")))
    s.create_artist(D, "monet", "Claude Monet", {"born": 1840})
    s.create_artist(D, "vangogh", "Vincent van Gogh", {})
    return s


def _path(sha256: str, data: bytes) -> str:
    return f"originals/{sha256[:2]}/{sha256}.bin"


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    db: SqlEngine = make_engine(sqlite_url(tmp_path / "x.db"))
    with db.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_artists_crud(store: Store) -> None:
    a = store.get_artist(D, "monet")
    assert (a.name, a.meta, a.works) == ("Claude Monet", {"born": 1840}, 0)
    assert a.created.utcoffset() is not None  # aware UTC on every backend, SQLite included
    with pytest.raises(ServiceError) as e:
        store.create_artist(D, "monet", "again", {})
    assert (status_of(e.value), e.value.code) == (409, "artist_exists")
    items, total = store.list_artists(D, 0, 1)
    assert total == 2 and [i.id for i in items] == ["monet"]
    items, total = store.list_artists(D, 1, 10)
    assert [i.id for i in items] == ["vangogh"]
    store.delete_artist(D, "vangogh")
    with pytest.raises(ServiceError) as e:
        store.get_artist(D, "vangogh")
    assert (status_of(e.value), e.value.code) == (404, "unknown_artist")
    with pytest.raises(ServiceError):
        store.delete_artist(D, "vangogh")


def test_unknown_artist_and_work(store: Store, model: Model) -> None:
    with pytest.raises(ServiceError) as e:
        store.add_works(D, "nobody", model.model_id, [new_work(model, 1)], _path)
    assert e.value.code == "unknown_artist"
    _, (w,) = store.add_works(D, "monet", model.model_id, [new_work(model, 1)], _path)
    with pytest.raises(ServiceError) as e:
        store.delete_work(D, "vangogh", w.id)  # exists, but not in this portfolio
    assert (status_of(e.value), e.value.code) == (404, "unknown_work")
    with pytest.raises(ServiceError) as e:
        store.list_works(D, "nobody")
    assert e.value.code == "unknown_artist"
    # NUL is never stored, so never found (PostgreSQL would fail the statement instead)
    with pytest.raises(ServiceError) as e:
        store.get_artist(D, "a\x00b")
    assert e.value.code == "unknown_artist"
    with pytest.raises(ServiceError) as e:
        store.delete_work(D, "monet", "a\x00b")
    assert e.value.code == "unknown_work"


def test_work_path_is_found_only_through_the_works_artist(store: Store, model: Model) -> None:
    item = new_work(model, 3)
    _, (w,) = store.add_works(D, "monet", model.model_id, [item], _path)
    v = store.version()
    assert store.work_path(D, "monet", w.id) == _path(item.sha256, item.data) and store.version() == v  # a read
    for artist, work, code in [
        ("vangogh", w.id, "unknown_work"),  # exists, but not in this portfolio
        ("nobody", w.id, "unknown_artist"),
        ("nobody", "a\x00b", "unknown_artist"),  # the artist is judged first
        ("monet", "no-such-work", "unknown_work"),
        ("monet", "a\x00b", "unknown_work"),
        ("a\x00b", w.id, "unknown_artist"),
    ]:
        with pytest.raises(ServiceError) as e:
            store.work_path(D, artist, work)
        assert (status_of(e.value), e.value.code) == (404, code), (artist, work)


def test_every_write_bumps_the_version(store: Store, model: Model) -> None:
    v0 = store.version()
    c1, works = store.add_works(D, "monet", model.model_id, [new_work(model, 1), new_work(model, 2)], _path)
    assert c1 == Committed(v0, v0 + 1)
    assert c1.after == v0 + 1 == store.version() == store.version(D)
    removed = store.delete_work(D, "monet", works[0].id)
    assert removed.committed == Committed(v0 + 1, v0 + 2) and removed.work_ids == [works[0].id]
    assert removed.paths == [_path(works[0].sha256, b"")]
    assert store.add_embeddings("other@1", [(works[1].id, np.zeros(model.embedding_dim, np.float32))]) == v0 + 3
    assert store.prune(model.model_id) == (v0 + 4, 1)
    assert store.version(D) == v0 + 4  # deployment-wide writes stamp every collection
    assert store.delete_artist(D, "monet").committed == Committed(v0 + 4, v0 + 5)
    assert store.version() == store.version(D) == v0 + 5


def test_a_collection_is_stamped_with_the_deployment_version_of_its_own_writes(store: Store, model: Model) -> None:
    """A collection's version moves with its own writes only, to the deployment counter's new value: never
    repeated, not even by a collection deleted and made again with the same id."""
    collections = Collections(store.db, "/nonexistent-unused")
    collections.create("other")
    store.create_artist("other", "monet", "Another Monet", {})
    before_other = store.version("other")
    c, _ = store.add_works(D, "monet", model.model_id, [new_work(model, 1)], _path)
    assert store.version("other") == before_other and store.version(D) == c.after
    c2, _ = store.add_works("other", "monet", model.model_id, [new_work(model, 1)], _path)
    assert c2 == Committed(before_other, c.after + 1) and store.version(D) == c.after
    collections.delete("other")
    assert store.version("other") == -1
    collections.create("other")
    assert store.version("other") > c2.after


def test_collections_see_only_their_own_rows(store: Store, model: Model) -> None:
    Collections(store.db, "/nonexistent-unused").create("other")
    store.create_artist("other", "monet", "Someone else's Monet", {})  # the same id in another collection
    _, (mine,) = store.add_works(D, "monet", model.model_id, [new_work(model, 1)], _path)
    _, (theirs,) = store.add_works("other", "monet", model.model_id, [new_work(model, 1)], _path)  # same bytes
    assert store.get_artist(D, "monet").name == "Claude Monet" and store.get_artist("other", "monet").works == 1
    assert [w.id for w in store.list_works(D, "monet")] == [mine.id]
    assert [a.id for a in store.list_artists("other", 0, 10)[0]] == ["monet"]
    assert store.list_artists("other", 0, 10)[1] == 1 and store.list_artists(D, 0, 10)[1] == 2
    for action in (
        lambda: store.work_path(D, "monet", theirs.id),
        lambda: store.delete_work(D, "monet", theirs.id),
    ):
        with pytest.raises(ServiceError) as e:
            action()
        assert (status_of(e.value), e.value.code) == (404, "unknown_work")  # as a work that never existed
    with pytest.raises(ServiceError) as e:
        store.get_artist("other", "vangogh")
    assert (status_of(e.value), e.value.code) == (404, "unknown_artist")
    assert store.snapshot("other", model.model_id, model.embedding_dim).work_ids == [theirs.id]
    assert store.artist_names("other", ["monet", "vangogh"]) == {"monet": "Someone else's Monet"}


def test_quota_refuses_an_enrolment_past_it_inside_its_transaction(store: Store, model: Model) -> None:
    Collections(store.db, "/nonexistent-unused").create("small", max_works=2, max_bytes=10_000)
    store.create_artist("small", "monet", "Monet", {})
    store.add_works("small", "monet", model.model_id, [new_work(model, 1)], _path)
    version = store.version()
    with pytest.raises(ServiceError) as e:
        store.add_works("small", "monet", model.model_id, [new_work(model, 2), new_work(model, 3)], _path)
    assert (status_of(e.value), e.value.code) == (409, "quota_exceeded") and "quota is 2" in e.value.message
    assert len(store.list_works("small", "monet")) == 1 and store.version() == version
    big = new_work(model, 4)
    big = type(big)(filename="big.png", data=b"x" * 20_000, sha256="0" * 64, embedding=big.embedding)
    with pytest.raises(ServiceError) as e:
        store.add_works("small", "monet", model.model_id, [big], _path)
    assert e.value.code == "quota_exceeded" and "bytes" in e.value.message
    store.add_works("small", "monet", model.model_id, [new_work(model, 5)], _path)  # the second still fits


def test_enrolment_is_one_transaction(store: Store, model: Model) -> None:
    saved: list[str] = []

    def save_then_fail(sha256: str, data: bytes) -> str:
        if len(saved) == 2:
            raise OSError("disk full")
        saved.append(sha256)
        return _path(sha256, data)

    version = store.version()
    with pytest.raises(OSError, match="disk full"):
        store.add_works(D, "monet", model.model_id, [new_work(model, s) for s in range(3)], save_then_fail)
    assert len(saved) == 2  # the originals are saved inside the transaction, before the commit
    assert store.list_works(D, "monet") == [] and store.version() == version  # the bump was rolled back too


def test_snapshot_holds_one_models_embeddings_in_row_order(store: Store, model: Model) -> None:
    items = [new_work(model, s) for s in range(3)]
    _, works = store.add_works(D, "monet", model.model_id, items, _path)
    snap = store.snapshot(D, model.model_id, model.embedding_dim)
    assert snap.work_ids == [w.id for w in works] and snap.artist_ids == ["monet"] * 3 and snap.missing == 0
    np.testing.assert_array_equal(snap.embeddings, np.stack([it.embedding for it in items]))
    other = store.snapshot(D, "other@1", model.embedding_dim)
    assert other.work_ids == [] and other.missing == 3
    assert [w for w, _ in store.lacking_embeddings("other@1")] == sorted(w.id for w in works)
    assert store.unreferenced([_path(items[0].sha256, b""), "originals/zz/gone.bin"]) == ["originals/zz/gone.bin"]
