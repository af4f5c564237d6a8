"""service/storage/gallery.py: the store, the originals and the index composed — one transaction per enrolment,
files and faiss in step with the database, restarts and model changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from service.api.errors import status_of
from service.errors import ServiceError
from service.serving.model import Model
from service.storage.db import make_sessionmaker
from service.storage.gallery import Gallery
from service.storage.originals import OriginalStore
from service.storage.schema import EmbeddingRow
from tests.service.galleries import db_work_ids, make_gallery, new_work, originals


@pytest.fixture
def gallery(tmp_path: Path, model: Model) -> Gallery:
    g = make_gallery(tmp_path, model)
    g.create_artist("monet", "Claude Monet", {"born": 1840})
    g.create_artist("vangogh", "Vincent van Gogh")
    return g


def test_enrol_stores_originals_content_addressed(gallery: Gallery, tmp_path: Path, model: Model) -> None:
    works = gallery.add_works("monet", [new_work(model, 1), new_work(model, 2)])
    assert [w.filename for w in works] == ["w1.png", "w2.png"]
    files = originals(tmp_path)
    assert len(files) == 2
    for w in works:
        p = tmp_path / "originals" / w.sha256[:2] / f"{w.sha256}.bin"
        assert p in files and hashlib.sha256(p.read_bytes()).hexdigest() == w.sha256
    assert not list((tmp_path / "originals").rglob(".tmp-*"))
    assert gallery.get_artist("monet").works == 2
    assert [w.id for w in gallery.list_works("monet")] == [w.id for w in works]
    p = gallery.portfolio("monet")
    assert p.work_ids == [w.id for w in works] and p.vectors.shape == (2, model.reference_dim)


def test_original_reads_the_works_bytes_through_its_artist(gallery: Gallery, model: Model, tmp_path: Path) -> None:
    item = new_work(model, 4)
    (w,) = gallery.add_works("monet", [item])
    assert gallery.original("monet", w.id) == item.data
    for artist, code in [("vangogh", "unknown_work"), ("nobody", "unknown_artist")]:
        with pytest.raises(ServiceError) as e:
            gallery.original(artist, w.id)
        assert (status_of(e.value), e.value.code) == (404, code)
    (file,) = originals(tmp_path)
    file.unlink()  # the row is there, its original is not: 404 as before the split, saying so
    with pytest.raises(ServiceError) as e:
        gallery.original("monet", w.id)
    assert (status_of(e.value), e.value.code) == (404, "unknown_work") and "missing" in e.value.message


def test_duplicates(gallery: Gallery, model: Model, tmp_path: Path) -> None:
    gallery.add_works("monet", [new_work(model, 1)])
    with pytest.raises(ServiceError) as e:
        gallery.add_works("monet", [new_work(model, 2), new_work(model, 1, "again.png")])
    assert (status_of(e.value), e.value.code) == (409, "duplicate_work")
    with pytest.raises(ServiceError) as e:
        gallery.add_works("vangogh", [new_work(model, 3), new_work(model, 3, "copy.png")])
    assert e.value.code == "duplicate_work"
    assert len(gallery) == 1 and len(originals(tmp_path)) == 1
    # the same picture under another artist is refused, naming the work, unless the caller means it
    with pytest.raises(ServiceError) as e:
        gallery.add_works("vangogh", [new_work(model, 1, "w1-again.png")])
    assert e.value.code == "duplicate_work" and "of artist 'monet'" in e.value.message
    assert "allow_duplicate=true" in e.value.message
    # then it may sit in two portfolios; the original is shared and outlives one deletion
    (w,) = gallery.add_works("vangogh", [new_work(model, 1)], allow_duplicate=True)
    assert len(originals(tmp_path)) == 1
    gallery.delete_work("vangogh", w.id)
    assert len(originals(tmp_path)) == 1
    gallery.delete_artist("monet")
    assert originals(tmp_path) == []


def test_failing_file_in_enrolment_leaves_nothing(
    gallery: Gallery, model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery.add_works("monet", [new_work(model, 9)])
    before = (originals(tmp_path), db_work_ids(gallery), list(gallery.index.work_ids))
    real_put = OriginalStore.put
    calls = {"n": 0}

    def flaky_put(self: OriginalStore, sha256: str, data: bytes) -> tuple[str, bool]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_put(self, sha256, data)

    monkeypatch.setattr(OriginalStore, "put", flaky_put)
    with pytest.raises(OSError, match="disk full"):
        gallery.add_works("monet", [new_work(model, 1), new_work(model, 2), new_work(model, 3)])
    assert calls["n"] == 3
    assert (originals(tmp_path), db_work_ids(gallery), list(gallery.index.work_ids)) == before
    gallery.index.check()


def test_unknown_artist_and_work(gallery: Gallery, model: Model) -> None:
    with pytest.raises(ServiceError) as e:
        gallery.add_works("nobody", [new_work(model, 1)])
    assert e.value.code == "unknown_artist"
    (w,) = gallery.add_works("monet", [new_work(model, 1)])
    with pytest.raises(ServiceError) as e:
        gallery.delete_work("vangogh", w.id)  # exists, but not in this portfolio
    assert (status_of(e.value), e.value.code) == (404, "unknown_work")
    with pytest.raises(ServiceError) as e:
        gallery.list_works("nobody")
    assert e.value.code == "unknown_artist"
    with pytest.raises(ServiceError) as e:
        gallery.add_works("monet", [])
    assert e.value.code == "no_files"


def test_faiss_agrees_with_store_after_deletes(gallery: Gallery, model: Model) -> None:
    gallery.create_artist("degas", "Edgar Degas")
    m = gallery.add_works("monet", [new_work(model, s) for s in range(0, 4)])
    v = gallery.add_works("vangogh", [new_work(model, s) for s in range(10, 13)])
    d = gallery.add_works("degas", [new_work(model, s) for s in range(20, 22)])
    gallery.delete_work("monet", m[1].id)
    gallery.delete_artist("vangogh")
    gallery.index.check()
    assert set(gallery.index.work_ids) == db_work_ids(gallery) == {m[0].id, m[2].id, m[3].id, d[0].id, d[1].id}
    hits = gallery.search(gallery.portfolio("degas").vectors[1], 100)
    assert {h.work_id for h in hits} == db_work_ids(gallery)
    assert hits[0].work_id == d[1].id and hits[0].artist_id == "degas"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    assert gallery.portfolio("vangogh").work_ids == [] and v  # gone from memory too
    assert gallery.portfolio("monet").work_ids == [m[0].id, m[2].id, m[3].id]


def test_restart_rebuilds_the_same_index(gallery: Gallery, model: Model, tmp_path: Path) -> None:
    gallery.add_works("monet", [new_work(model, s) for s in range(3)])
    gallery.add_works("vangogh", [new_work(model, 7)])
    again = make_gallery(tmp_path, model)
    assert again.index.work_ids == gallery.index.work_ids
    np.testing.assert_array_equal(again.index.vectors, gallery.index.vectors)
    assert [a.id for a in again.list_artists()[0]] == ["monet", "vangogh"]
    assert not again.reindex_required


def test_other_model_refuses_to_mix_then_reindexes(gallery: Gallery, model: Model, tmp_path: Path) -> None:
    gallery.add_works("monet", [new_work(model, s) for s in range(3)])
    other = make_gallery(tmp_path, model, model_id="other-model@1")
    assert other.missing == 3 and other.reindex_required
    assert len(other) == 0  # the first model's embeddings are never loaded into the other's index
    seen: list[bytes] = []

    def embed_many(datas: list[bytes]) -> list[np.ndarray | Exception]:
        seen.extend(datas)
        return [np.full(model.embedding_dim, len(d), np.float32) for d in datas]

    result = other.reindex(embed_many, batch=2, prune=True)
    assert len(other) == 0  # stored, not yet loaded: the serving process swaps in a freshly built bundle
    other.load()
    assert result.embedded == 3 and result.failed == [] and result.pruned == 3
    assert sorted(seen) == sorted(new_work(model, s).data for s in range(3))
    assert not other.reindex_required and len(other) == 3
    with make_sessionmaker(other.db)() as s:
        assert s.scalar(select(func.count()).select_from(EmbeddingRow)) == 3
        assert set(s.scalars(select(EmbeddingRow.model_id)).all()) == {"other-model@1"}


def test_reindex_reports_missing_originals(gallery: Gallery, model: Model, tmp_path: Path) -> None:
    works = gallery.add_works("monet", [new_work(model, s) for s in range(2)])
    (tmp_path / "originals" / works[0].sha256[:2] / f"{works[0].sha256}.bin").unlink()
    other = make_gallery(tmp_path, model, model_id="other-model@1")
    result = other.reindex(lambda datas: [np.zeros(model.embedding_dim, np.float32) for _ in datas])
    other.load()
    assert result.embedded == 1 and result.failed == [works[0].id]
    assert other.reindex_required and other.missing == 1
    other.delete_work("monet", works[0].id)
    assert not other.reindex_required
