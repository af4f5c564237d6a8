"""One collection's portfolios: the SQL store (service/storage/store.py), the originals on disk
(service/storage/originals.py) and the vector index (service/storage/index.py) composed, with the version
bookkeeping of service/storage/replicas.py between them.

A `Gallery` sees one collection (`collection`): its artists, works and references only; its index holds nothing
else, so a search, a portfolio or a calibration built from it cannot reach another collection's works. Every
collection a process serves has its own (the serving bundle builds them, service/serving/bundle.py); they share
the bundle's `Store`, whose write guard an upgrade sets once for all.

- Enrolling several files is one transaction, all or nothing: the originals are written (atomically) inside it,
  before the commit, and a failed enrolment removes the files it created.
- Embeddings are tagged with the model id. Only the current model's are ever loaded, so two models are never
  mixed; works lacking one are counted (`missing`) and `reindex()` fills them from the originals.
- In memory: the reference vectors (projection of the embedding for symmetric heads, else the embedding) of
  every work, indexed for search. They are rebuilt from the store at start and updated under one lock after
  every committed change; the lock also serialises writes, so the store and the index never disagree within
  this process. Other processes' writes arrive through `sync()`, which the scorer calls before it reads.
Raises domain errors only (service/errors.py). Covered by tests/service/test_gallery.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Engine as SqlEngine

from service.errors import Conflict, DuplicateWork, NoFiles, NotFound
from service.storage.index import Hit, ReferenceIndex, gpu_available
from service.storage.originals import OriginalStore
from service.storage.replicas import ReplicaSync
from service.storage.schema import DEFAULT_COLLECTION
from service.storage.store import Artist, Committed, NewWork, Removed, Store, Work

if TYPE_CHECKING:
    from service.serving.model import Model

log = logging.getLogger(__name__)

__all__ = [
    "Artist",
    "Gallery",
    "Hit",
    "NewWork",
    "Portfolio",
    "ReferenceIndex",
    "ReferenceSpace",
    "SameWork",
    "Work",
]

ReferenceFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ReferenceSpace:
    """What the gallery needs of the model: whose embeddings it keeps, their size, and how an embedding becomes
    the reference vector that is indexed and scored."""

    model_id: str
    embedding_dim: int
    reference_dim: int
    to_reference: ReferenceFn
    same_work: float | None = None  # cosine of reference vectors from which two pictures show one painting

    @classmethod
    def of(cls, model: Model) -> ReferenceSpace:
        measured = model.card.calibration.same_work
        threshold = None if measured is None else measured.threshold
        return cls(model.model_id, model.embedding_dim, model.reference_dim, model.reference_vectors, threshold)


@dataclass(frozen=True)
class SameWork:
    """An enrolled work a picture shows: the same bytes (`identical`), or the same painting by the measured
    similarity of their reference vectors (`similarity`, cosine)."""

    work: Work
    artist_name: str
    similarity: float
    identical: bool

    def describe(self) -> str:
        title = f" ({self.work.title!r})" if self.work.title else ""
        how = "the same file as" if self.identical else f"the same painting (similarity {self.similarity:.3f}) as"
        return f"{how} work {self.work.id}{title} of artist {self.work.artist_id!r} ({self.artist_name})"


@dataclass(frozen=True)
class Portfolio:
    artist_id: str
    work_ids: list[str]
    vectors: np.ndarray  # reference vectors [n, R]


@dataclass
class ReindexResult:
    embedded: int = 0
    failed: list[str] = field(default_factory=list)  # work ids whose original is missing or unreadable
    pruned: int = 0


class Gallery:
    def __init__(
        self,
        db: SqlEngine,
        data_dir: str | Path,
        space: ReferenceSpace,
        use_gpu: bool | None = None,
        *,
        collection: str = DEFAULT_COLLECTION,
        store: Store | None = None,
    ):
        """`store`: the one the bundle's galleries share (its write guard applies to all); a new one by default."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.space = space
        self.collection = collection
        self.store = store if store is not None else Store(db)
        self.originals = OriginalStore(self.data_dir)
        self.index = ReferenceIndex(space.reference_dim, gpu_available() if use_gpu is None else use_gpu)
        self.missing = 0  # this collection's works without an embedding of the model
        self._lock = threading.RLock()
        self.replicas = ReplicaSync(lambda: self.store.version(collection), self.load, self._lock)
        self.load()

    @property
    def db(self) -> SqlEngine:
        return self.store.db

    @property
    def model_id(self) -> str:
        return self.space.model_id

    # ---- state ------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild the in-memory vectors and the index from the store (current model only)."""
        with self._lock:
            snap = self.store.snapshot(self.collection, self.model_id, self.space.embedding_dim)
            self.index.reset(snap.work_ids, snap.artist_ids, self._references(snap.embeddings))
            self.missing = snap.missing
            self.replicas.loaded(snap.version)
        log.info(
            "gallery %s: %d references loaded for %s, %d works need reindex",
            self.collection,
            len(self),
            self.model_id,
            self.missing,
        )

    def sync(self) -> None:
        """Bring the index up to date with other processes' writes (a no-op when there were none)."""
        self.replicas.sync()

    def _references(self, emb: np.ndarray, chunk: int = 256) -> np.ndarray:
        parts = [self.space.to_reference(emb[i : i + chunk]) for i in range(0, len(emb), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.index.dim), np.float32)

    def _apply(self, committed: Committed, in_place: Callable[[], None]) -> None:
        """After this process committed a write: update the index in place when that is exact, else reload."""
        if self.replicas.applied(committed):
            in_place()
        else:
            self.load()

    @property
    def reindex_required(self) -> bool:
        return self.missing > 0

    def ping(self) -> bool:
        try:
            return self.store.ping()
        except Exception:
            log.exception("gallery: store unreachable")
            return False

    # ---- artists ----------------------------------------------------------------------------------------
    def create_artist(self, artist_id: str, name: str, meta: dict | None = None) -> Artist:
        with self._lock:
            return self.store.create_artist(self.collection, artist_id, name, dict(meta or {}))

    def get_artist(self, artist_id: str) -> Artist:
        return self.store.get_artist(self.collection, artist_id)

    def update_artist(self, artist_id: str, name: str | None = None, meta: dict | None = None) -> Artist:
        return self.store.update_artist(self.collection, artist_id, name, meta)

    def artist_names(self, artist_ids: Sequence[str]) -> dict[str, str]:
        return self.store.artist_names(self.collection, artist_ids)

    def list_artists(self, offset: int = 0, limit: int = 50) -> tuple[list[Artist], int]:
        return self.store.list_artists(self.collection, offset, limit)

    def delete_artist(self, artist_id: str) -> None:
        with self._lock:
            removed = self.store.delete_artist(self.collection, artist_id)
            self._apply(removed.committed, lambda: self.index.remove(set(removed.work_ids)))
            self._after_delete(removed)

    # ---- works ------------------------------------------------------------------------------------------
    # ---- copies of enrolled works ----------------------------------------------------------------------------
    def same_work(self, sha256: str, reference: np.ndarray) -> SameWork | None:
        """The enrolled work of this collection this picture shows, if any: one with the same bytes, else the
        nearest reference at or above the model's measured same-painting similarity (none measured: only the same
        bytes count). Another collection's works are never looked at."""
        exact = self.store.works_with_sha256(self.collection, sha256)
        if exact:
            w = exact[0]
            return SameWork(w, self.store.artist_names(self.collection, [w.artist_id]).get(w.artist_id, ""), 1.0, True)
        threshold = self.space.same_work
        if threshold is None:
            return None
        self.sync()
        hits = self.search(reference, 1)
        if not hits or hits[0].similarity < threshold:
            return None
        work = self.store.works(self.collection, [hits[0].work_id]).get(hits[0].work_id)
        if work is None:  # deleted since the search
            return None
        return SameWork(
            work,
            self.store.artist_names(self.collection, [work.artist_id]).get(work.artist_id, ""),
            hits[0].similarity,
            False,
        )

    def _refuse_copies(self, artist_id: str, items: Sequence[NewWork], refs: np.ndarray) -> None:
        """409 for a picture of a painting already enrolled in this collection (under any artist), or shown twice in
        this upload; another collection's works are never looked at."""
        for it, ref in zip(items, refs, strict=True):
            found = self.same_work(it.sha256, ref)
            if found is not None and found.identical and found.work.artist_id == artist_id:
                continue  # already in this very portfolio: the store refuses that, allowed or not
            if found is not None:
                code = "duplicate_work" if found.identical else "same_painting"
                raise Conflict(
                    code,
                    f"{it.filename or 'the upload'!r} is {found.describe()}; to enrol it under {artist_id!r} all the "
                    "same, send allow_duplicate=true",
                )
        threshold = self.space.same_work
        if threshold is not None and len(items) > 1:
            unit = refs / np.maximum(np.linalg.norm(refs, axis=1, keepdims=True), 1e-12)
            sims = unit @ unit.T
            i, j = np.triu_indices(len(items), 1)
            close = np.nonzero(sims[i, j] >= threshold)[0]
            if len(close):
                a, b = items[i[close[0]]], items[j[close[0]]]
                raise Conflict(
                    "same_painting",
                    f"{b.filename!r} shows the same painting as {a.filename!r} in this upload (similarity "
                    f"{sims[i[close[0]], j[close[0]]]:.3f}); send allow_duplicate=true if both are wanted",
                )

    def add_works(self, artist_id: str, items: Sequence[NewWork], allow_duplicate: bool = False) -> list[Work]:
        """Enrol `items` (one transaction). Unless `allow_duplicate`, a picture of a painting already enrolled
        under any artist — the same bytes, or the same painting by the model's measured similarity — is a 409
        naming the work (`duplicate_work` / `same_painting`). The same bytes twice in one portfolio never are."""
        if not items:
            raise NoFiles()
        seen: dict[str, str] = {}
        for it in items:
            if it.sha256 in seen:
                raise DuplicateWork(f"{it.filename!r} has the same content as {seen[it.sha256]!r} in this upload")
            seen[it.sha256] = it.filename
            if it.embedding.shape != (self.space.embedding_dim,):
                raise ValueError(f"embedding shape {it.embedding.shape}, expected ({self.space.embedding_dim},)")
        refs = self.space.to_reference(np.stack([it.embedding for it in items]).astype(np.float32))
        created_files: list[str] = []

        def save(sha256: str, data: bytes) -> str:
            rel, created = self.originals.put(sha256, data)
            if created:
                created_files.append(rel)
            return rel

        with self._lock:
            if not allow_duplicate:
                self.get_artist(artist_id)  # 404 before any talk of copies
                self._refuse_copies(artist_id, items, refs)
            try:
                committed, works = self.store.add_works(self.collection, artist_id, self.model_id, items, save)
            except BaseException:
                for rel in created_files:
                    self.originals.remove(rel)
                raise
            self._apply(committed, lambda: self.index.add([w.id for w in works], [artist_id] * len(works), refs))
        return works

    def list_works(self, artist_id: str) -> list[Work]:
        return self.store.list_works(self.collection, artist_id)

    def update_work(self, artist_id: str, work_id: str, changes: dict[str, str | None]) -> Work:
        return self.store.update_work(self.collection, artist_id, work_id, changes)

    def works(self, work_ids: Sequence[str]) -> dict[str, Work]:
        return self.store.works(self.collection, work_ids)

    def original(self, artist_id: str, work_id: str) -> bytes:
        """The uploaded bytes of one of the artist's works (for thumbnails)."""
        path = self.store.work_path(self.collection, artist_id, work_id)
        try:
            return self.originals.read(path)
        except OSError as e:
            raise NotFound("unknown_work", f"the original of work {work_id!r} is missing from the store") from e

    def delete_work(self, artist_id: str, work_id: str) -> None:
        with self._lock:
            removed = self.store.delete_work(self.collection, artist_id, work_id)
            self._apply(removed.committed, lambda: self.index.remove(set(removed.work_ids)))
            self._after_delete(removed)

    def _after_delete(self, removed: Removed) -> None:
        """Drop originals no remaining work points at; recount works that lack an embedding."""
        for rel in self.store.unreferenced(removed.paths):
            self.originals.remove(rel)
        self.missing = self.store.count_missing(self.model_id, collection=self.collection)

    # ---- scoring support --------------------------------------------------------------------------------
    def portfolio(self, artist_id: str) -> Portfolio:
        with self._lock:
            rows = self.index.rows_of(artist_id)
            return Portfolio(artist_id, [self.index.work_ids[i] for i in rows], self.index.vectors[rows])

    def snapshot(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(version, artist of each reference, reference vectors), read together (gallery calibration)."""
        with self._lock:
            return self.replicas.version, np.array(self.index.artist_ids), self.index.vectors.copy()

    def search(self, query_vec: np.ndarray, n: int) -> list[Hit]:
        with self._lock:
            return self.index.search(np.asarray(query_vec, np.float32), n)

    def __len__(self) -> int:
        return len(self.index)

    # ---- model change -----------------------------------------------------------------------------------
    def reindex(
        self,
        embed_many: Callable[[list[bytes]], list[np.ndarray | Exception]],
        batch: int = 16,
        prune: bool = False,
        announce: bool = True,
    ) -> ReindexResult:
        """Embed, from their originals, every work lacking an embedding of the current model, and store them: the
        works of every collection (a model change is the deployment's, not one collection's).
        The in-memory index is left as it was: the serving process builds a new bundle around a freshly loaded
        gallery (service/serving/runtime.py `Runtime.reindex`), or a caller of this alone calls `load()`.

        Works whose original is missing or no longer decodes are listed in `failed` and keep the service in
        "reindex required" until they are deleted. `prune` drops embeddings of other models. `announce=False`
        writes the embeddings without bumping `gallery_state`: for a model no other process serves yet (an
        upgrade), so serving replicas do not reload their index after every batch.
        """
        return reindex(self.store, self.originals, self.model_id, embed_many, batch, prune, announce)


def reindex(
    store: Store,
    originals: OriginalStore,
    model_id: str,
    embed_many: Callable[[list[bytes]], list[np.ndarray | Exception]],
    batch: int = 16,
    prune: bool = False,
    announce: bool = True,
) -> ReindexResult:
    """`Gallery.reindex` for the whole deployment, without a gallery: every collection's works lacking an
    embedding of `model_id` embedded from their originals and stored (the runtime's reindex and the upgrade)."""
    result = ReindexResult()
    todo = store.lacking_embeddings(model_id)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        datas: list[bytes | None] = []
        for _, path in chunk:
            try:
                datas.append(originals.read(path))
            except OSError:
                datas.append(None)
        readable = [d for d in datas if d is not None]
        embedded = iter(embed_many(readable) if readable else [])
        vectors: list[tuple[str, np.ndarray]] = []
        for (work_id, _), d in zip(chunk, datas, strict=True):
            e = next(embedded) if d is not None else None
            if e is None or isinstance(e, Exception):
                log.warning("reindex: work %s cannot be embedded: %s", work_id, e or "original missing")
                result.failed.append(work_id)
                continue
            vectors.append((work_id, e))
        store.add_embeddings(model_id, vectors, announce=announce)
        result.embedded += len(vectors)
    if prune:
        _, result.pruned = store.prune(model_id)
    return result
