"""The SQL repository of portfolios: artists, works and their embeddings (SQLAlchemy, SQLite or PostgreSQL).

Every portfolio read and write names its collection (service/storage/schema.py `CollectionRow`) and sees only
that collection's rows: an artist or work of another collection is exactly as absent as one that never existed,
whatever its id. Nothing here touches files or the vector index. Each write is one transaction, and the first
statement of every write bumps the `gallery_state` version row and stamps the collection it changes with the new
version: the row lock then orders writers across processes, and the `Committed` (before, after) a write returns
tells its caller whether any other process wrote to that collection in between (service/storage/replicas.py).
Enrolment checks the collection's quota (works, bytes) inside its transaction.
Enrolment stays one transaction with the originals: `add_works` calls `save` for each work's bytes *inside* the
transaction, before the commit, so a committed work always has its original; its `write_guard` hook runs right
after the row lock and may refuse it (service/ops/upgrade.py). The one write that may leave the version alone is
`add_embeddings(announce=False)`, for a model nobody serves yet. Embeddings are tagged with the model id; only
one model's are ever read back. Values PostgreSQL text cannot hold (NUL) never match a row.
Covered by tests/service/test_store.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import (
    Conflict,
    DuplicateWork,
    Invalid,
    QuotaExceeded,
    UnknownArtist,
    UnknownCollection,
    UnknownWork,
)
from service.storage.db import make_sessionmaker, session_scope
from service.storage.schema import (
    CATALOGUE,
    ArtistRow,
    CollectionRow,
    EmbeddingRow,
    GalleryStateRow,
    WorkRow,
    utcnow,
)


@dataclass(frozen=True)
class Artist:
    id: str
    name: str
    meta: dict
    created: datetime
    works: int


@dataclass(frozen=True)
class Work:
    id: str
    artist_id: str
    filename: str
    sha256: str
    size_bytes: int
    created: datetime
    # its catalogue entry (schema.CATALOGUE's fields; None: not recorded)
    title: str | None = None
    date: str | None = None
    medium: str | None = None
    dimensions: str | None = None
    inventory_number: str | None = None
    photo_credit: str | None = None
    notes: str | None = None

    @property
    def catalogue(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in CATALOGUE}


@dataclass(frozen=True)
class NewWork:
    """A validated upload ready to enrol: its bytes, their sha256 and its embedding under the current model."""

    filename: str
    data: bytes
    sha256: str
    embedding: np.ndarray
    catalogue: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Committed:
    """A write's place in a collection's history: the collection's version before it and the one it committed."""

    before: int
    after: int


@dataclass(frozen=True)
class Snapshot:
    """Every work with an embedding of one model, in row order, and the version they were read at."""

    version: int
    work_ids: list[str]
    artist_ids: list[str]
    embeddings: np.ndarray  # [n, D]
    missing: int  # works without an embedding of this model


@dataclass(frozen=True)
class Removed:
    """What a committed delete took: the works, and the originals they pointed at."""

    committed: Committed
    work_ids: list[str]
    paths: list[str]


SaveOriginal = Callable[[str, bytes], str]  # (sha256, bytes) -> path stored with the work


def storable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL (SQLite can): such a value is never stored, so it never matches a row, and
    sending it to PostgreSQL would fail the statement (a 500) instead of answering."""
    return "\x00" not in text


def artist_exists(artist_id: str) -> Conflict:
    return Conflict("artist_exists", f"artist {artist_id!r} already exists")


def _artist(row: ArtistRow, works: int) -> Artist:
    return Artist(id=row.id, name=row.name, meta=dict(row.meta or {}), created=row.created, works=works)


def _work(row: WorkRow) -> Work:
    return Work(
        id=row.id,
        artist_id=row.artist_id,
        filename=row.filename,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        created=row.created,
        **{k: getattr(row, k) for k in CATALOGUE},
    )


class Store:
    def __init__(self, db: SqlEngine):
        self.db = db
        self._sessions = make_sessionmaker(db)
        # called inside every enrolment transaction right after its gallery_state row lock, where it may refuse
        # the enrolment (service/ops/upgrade.py does once another model serves)
        self.write_guard: Callable[[Session], None] | None = None
        self._ensure_state_row()

    def _ensure_state_row(self) -> None:
        try:
            with session_scope(self._sessions) as s:
                if s.get(GalleryStateRow, 1) is None:
                    s.add(GalleryStateRow(id=1, version=0))
        except IntegrityError:
            pass  # another process starting at the same time inserted it

    # ---- the version rows -----------------------------------------------------------------------------------
    @staticmethod
    def _read_version(s: Session) -> int:
        return int(s.scalar(select(GalleryStateRow.version).where(GalleryStateRow.id == 1)) or 0)

    @staticmethod
    def _bump(s: Session, collection: str | None = None) -> Committed:
        """Count this transaction as a change (first thing in it: the row lock then orders writers), and stamp
        `collection` (None: every collection) with the new version; `UnknownCollection` when there is none."""
        s.execute(update(GalleryStateRow).where(GalleryStateRow.id == 1).values(version=GalleryStateRow.version + 1))
        after = Store._read_version(s)
        if collection is None:
            s.execute(update(CollectionRow).values(version=after))
            return Committed(after - 1, after)
        before = s.scalar(select(CollectionRow.version).where(CollectionRow.id == collection))
        if before is None:
            raise UnknownCollection(collection)
        s.execute(update(CollectionRow).where(CollectionRow.id == collection).values(version=after))
        return Committed(int(before), after)

    def version_in(self, s: Session) -> int:
        """The deployment's version, read inside `s` (a `write()` transaction: the one it committed)."""
        return self._read_version(s)

    def version(self, collection: str | None = None) -> int:
        """The deployment's version (None), or the version of `collection`'s last write (-1: no such collection)."""
        with self._sessions() as s:
            if collection is None:
                return self._read_version(s)
            v = s.scalar(select(CollectionRow.version).where(CollectionRow.id == collection))
            return -1 if v is None else int(v)

    @contextmanager
    def write(self, collection: str | None = None) -> Iterator[Session]:
        """One write transaction for a caller whose change spans more than this module's tables (a model switch,
        a restore, a collection's deletion), counted like every write here: the version row is bumped, and so
        locked, first, and `collection` (None: every collection) stamped with it."""
        with session_scope(self._sessions) as s:
            self._bump(s, collection)
            yield s

    def collection_ids(self) -> list[str]:
        with self._sessions() as s:
            return list(s.scalars(select(CollectionRow.id).order_by(CollectionRow.created, CollectionRow.id)))

    def ping(self) -> bool:
        with self._sessions() as s:
            s.execute(select(1))
        return True

    # ---- embeddings ---------------------------------------------------------------------------------------
    @staticmethod
    def _lacking_embedding(model_id: str, collection: str | None):  # type: ignore[no-untyped-def]
        has = exists().where(and_(EmbeddingRow.work_id == WorkRow.id, EmbeddingRow.model_id == model_id))
        return ~has if collection is None else and_(WorkRow.collection_id == collection, ~has)

    def _count_missing(self, s: Session, model_id: str, collection: str | None) -> int:
        lacking = self._lacking_embedding(model_id, collection)
        return int(s.scalar(select(func.count(WorkRow.id)).where(lacking)) or 0)

    def count_missing(self, model_id: str, session: Session | None = None, collection: str | None = None) -> int:
        """Works without an embedding of `model_id`, in `collection` (None: anywhere); read inside `session` when
        given (a `write()` transaction)."""
        if session is not None:
            return self._count_missing(session, model_id, collection)
        with self._sessions() as s:
            return self._count_missing(s, model_id, collection)

    def count_embedded(self, model_id: str) -> int:
        """Works anywhere with an embedding of `model_id` (the deployment's references, for operators)."""
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).where(EmbeddingRow.model_id == model_id)) or 0)

    def snapshot(self, collection: str, model_id: str, dim: int) -> Snapshot:
        """Every work of `collection` with an embedding of `model_id`, and the collection's version they were
        read at."""
        with self._sessions() as s:
            # read first: a change committed between the two reads is then loaded and reloaded, never missed
            version = s.scalar(select(CollectionRow.version).where(CollectionRow.id == collection))
            rows = s.execute(
                select(WorkRow.id, WorkRow.artist_id, EmbeddingRow.vector, EmbeddingRow.dim)
                .join(EmbeddingRow, and_(EmbeddingRow.work_id == WorkRow.id, EmbeddingRow.model_id == model_id))
                .where(WorkRow.collection_id == collection)
                .order_by(WorkRow.created, WorkRow.id)
            ).all()
            emb = np.zeros((len(rows), dim), np.float32)
            for i, r in enumerate(rows):
                if r.dim != dim:
                    raise RuntimeError(f"embedding of work {r.id} has dim {r.dim}; model {model_id} makes {dim}")
                emb[i] = np.frombuffer(r.vector, dtype="<f4")
            missing = self._count_missing(s, model_id, collection)
        version = -1 if version is None else int(version)
        return Snapshot(version, [r.id for r in rows], [r.artist_id for r in rows], emb, missing)

    def lacking_embeddings(self, model_id: str) -> list[tuple[str, str]]:
        """(work id, original's path) of every work, in every collection, without an embedding of `model_id`."""
        with self._sessions() as s:
            rows = s.execute(
                select(WorkRow.id, WorkRow.path).where(self._lacking_embedding(model_id, None)).order_by(WorkRow.id)
            ).all()
            return [(r.id, r.path) for r in rows]

    def add_embeddings(self, model_id: str, vectors: Sequence[tuple[str, np.ndarray]], announce: bool = True) -> int:
        """Store (work id, embedding) pairs of `model_id`; returns the version committed. `announce=False` leaves
        the versions as they are: for a model no process serves yet (an upgrade), whose embeddings no index
        reflects, so other processes need not reload. Announced, every collection counts as changed."""
        with session_scope(self._sessions) as s:
            version = self._bump(s).after if announce else self._read_version(s)
            for work_id, e in vectors:
                vec = np.ascontiguousarray(e, "<f4").reshape(-1)
                s.add(EmbeddingRow(work_id=work_id, model_id=model_id, dim=len(vec), vector=vec.tobytes()))
            return version

    def prune(self, model_id: str) -> tuple[int, int]:
        """Drop every embedding of other models; returns (version committed, embeddings dropped)."""
        with session_scope(self._sessions) as s:
            version = self._bump(s).after
            stale = select(func.count()).select_from(EmbeddingRow).where(EmbeddingRow.model_id != model_id)
            pruned = int(s.scalar(stale) or 0)
            s.execute(delete(EmbeddingRow).where(EmbeddingRow.model_id != model_id))
            return version, pruned

    # ---- artists ------------------------------------------------------------------------------------------
    @staticmethod
    def _artist_row(s: Session, collection: str, artist_id: str) -> ArtistRow | None:
        return s.get(ArtistRow, (collection, artist_id)) if storable(artist_id) else None

    def create_artist(self, collection: str, artist_id: str, name: str, meta: dict) -> Artist:
        if not storable(name):
            raise Invalid("invalid_request", "name must not contain NUL characters")
        try:
            with session_scope(self._sessions) as s:
                if s.get(CollectionRow, collection) is None:
                    raise UnknownCollection(collection)
                if self._artist_row(s, collection, artist_id) is not None:
                    raise artist_exists(artist_id)
                row = ArtistRow(collection_id=collection, id=artist_id, name=name, meta=dict(meta))
                s.add(row)
                s.flush()
                return _artist(row, 0)
        except IntegrityError as e:
            raise artist_exists(artist_id) from e

    def update_artist(
        self, collection: str, artist_id: str, name: str | None = None, meta: dict | None = None
    ) -> Artist:
        """Rename an artist of `collection` and/or replace its meta; the portfolio and its embeddings are untouched
        (no version bump: nothing any index holds changed)."""
        if name is not None and not storable(name):
            raise Invalid("invalid_name", "name must not contain NUL characters")
        with session_scope(self._sessions) as s:
            row = self._artist_row(s, collection, artist_id)
            if row is None:
                raise UnknownArtist(artist_id)
            if name is not None:
                row.name = name
            if meta is not None:
                row.meta = dict(meta)
            n = s.scalar(
                select(func.count(WorkRow.id)).where(
                    WorkRow.collection_id == collection, WorkRow.artist_id == artist_id
                )
            )
            return _artist(row, int(n or 0))

    def get_artist(self, collection: str, artist_id: str) -> Artist:
        with self._sessions() as s:
            row = self._artist_row(s, collection, artist_id)
            if row is None:
                raise UnknownArtist(artist_id)
            n = s.scalar(
                select(func.count(WorkRow.id)).where(
                    WorkRow.collection_id == collection, WorkRow.artist_id == artist_id
                )
            )
            return _artist(row, int(n or 0))

    def artist_names(self, collection: str, artist_ids: Sequence[str]) -> dict[str, str]:
        with self._sessions() as s:
            rows = s.execute(
                select(ArtistRow.id, ArtistRow.name).where(
                    ArtistRow.collection_id == collection, ArtistRow.id.in_([a for a in artist_ids if storable(a)])
                )
            ).all()
            return {r.id: r.name for r in rows}

    def list_artists(self, collection: str, offset: int, limit: int) -> tuple[list[Artist], int]:
        counts = (
            select(WorkRow.artist_id, func.count(WorkRow.id).label("n"))
            .where(WorkRow.collection_id == collection)
            .group_by(WorkRow.artist_id)
            .subquery()
        )
        with self._sessions() as s:
            total = int(s.scalar(select(func.count(ArtistRow.id)).where(ArtistRow.collection_id == collection)) or 0)
            rows = s.execute(
                select(ArtistRow, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.artist_id == ArtistRow.id)
                .where(ArtistRow.collection_id == collection)
                .order_by(ArtistRow.created, ArtistRow.id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [_artist(a, int(n)) for a, n in rows], total

    def delete_artist(self, collection: str, artist_id: str) -> Removed:
        if not storable(artist_id):
            raise UnknownArtist(artist_id)
        with session_scope(self._sessions) as s:
            committed = self._bump(s, collection)
            row = self._artist_row(s, collection, artist_id)
            if row is None:
                raise UnknownArtist(artist_id)
            works = s.execute(
                select(WorkRow.id, WorkRow.path).where(
                    WorkRow.collection_id == collection, WorkRow.artist_id == artist_id
                )
            ).all()
            # explicit deletes, child first: correct whether or not the backend enforces ON DELETE CASCADE
            ids = [w.id for w in works]
            if ids:
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.work_id.in_(ids)))
                s.execute(delete(WorkRow).where(WorkRow.id.in_(ids)))
            s.delete(row)
        return Removed(committed, ids, [w.path for w in works])

    # ---- works --------------------------------------------------------------------------------------------
    @staticmethod
    def check_quota(s: Session, collection: str, works: int, nbytes: int) -> None:
        """`works` more works of `nbytes` bytes in all fit the collection's quota (counted with what it holds), else
        `QuotaExceeded`: the one quota rule, for enrolment and for a restore into an existing collection."""
        quota = s.get(CollectionRow, collection)
        if quota is None:
            raise UnknownCollection(collection)
        if quota.max_works is None and quota.max_bytes is None:
            return
        n, size = s.execute(
            select(func.count(WorkRow.id), func.coalesce(func.sum(WorkRow.size_bytes), 0)).where(
                WorkRow.collection_id == collection
            )
        ).one()
        if quota.max_works is not None and n + works > quota.max_works:
            raise QuotaExceeded(
                f"the collection holds {n} works and its quota is {quota.max_works}: {works} more do not fit"
            )
        if quota.max_bytes is not None and size + nbytes > quota.max_bytes:
            raise QuotaExceeded(
                f"the collection's works take {size} bytes and its quota is {quota.max_bytes}: {nbytes} more do not fit"
            )

    def add_works(
        self, collection: str, artist_id: str, model_id: str, items: Sequence[NewWork], save: SaveOriginal
    ) -> tuple[Committed, list[Work]]:
        """Insert the works and their embeddings in one transaction; returns (what it committed, works).

        `save(sha256, data)` is called for each work inside the transaction and returns the path to record;
        if anything fails, nothing is committed (the caller removes the originals it saved)."""
        if not storable(artist_id):
            raise UnknownArtist(artist_id)
        names = {it.sha256: it.filename for it in items}
        try:
            with session_scope(self._sessions) as s:
                committed = self._bump(s, collection)
                if self.write_guard is not None:
                    self.write_guard(s)
                if self._artist_row(s, collection, artist_id) is None:
                    raise UnknownArtist(artist_id)
                dup = s.execute(
                    select(WorkRow.id, WorkRow.sha256).where(
                        WorkRow.collection_id == collection,
                        WorkRow.artist_id == artist_id,
                        WorkRow.sha256.in_(list(names)),
                    )
                ).first()
                if dup is not None:
                    raise DuplicateWork(
                        f"{names[dup.sha256]!r} is already in artist {artist_id!r}'s portfolio as work {dup.id}"
                    )
                self.check_quota(s, collection, len(items), sum(len(it.data) for it in items))
                rows = []
                now = utcnow()
                for i, it in enumerate(items):
                    work = WorkRow(
                        collection_id=collection,
                        artist_id=artist_id,
                        sha256=it.sha256,
                        filename=clean_filename(it.filename),
                        path=save(it.sha256, it.data),
                        size_bytes=len(it.data),
                        # listings order by creation time: a microsecond apart keeps the upload order
                        created=now + timedelta(microseconds=i),
                        **it.catalogue,
                    )
                    work.embeddings.append(
                        EmbeddingRow(
                            model_id=model_id,
                            dim=len(it.embedding),
                            vector=np.ascontiguousarray(it.embedding, "<f4").tobytes(),
                        )
                    )
                    s.add(work)
                    rows.append(work)
                s.flush()
                return committed, [_work(r) for r in rows]
        except IntegrityError as e:
            raise DuplicateWork("this work is already in the portfolio") from e

    def list_works(self, collection: str, artist_id: str) -> list[Work]:
        with self._sessions() as s:
            if self._artist_row(s, collection, artist_id) is None:
                raise UnknownArtist(artist_id)
            rows = s.scalars(
                select(WorkRow)
                .where(WorkRow.collection_id == collection, WorkRow.artist_id == artist_id)
                .order_by(WorkRow.created, WorkRow.id)
            ).all()
            return [_work(r) for r in rows]

    @staticmethod
    def _work_row(s: Session, collection: str, artist_id: str, work_id: str) -> WorkRow:
        """One of the artist's works in `collection`; a work of another artist or collection is as unknown as
        one that does not exist."""
        row = s.get(WorkRow, work_id) if storable(work_id) else None
        if row is None or row.collection_id != collection or row.artist_id != artist_id:
            raise UnknownWork(artist_id, work_id)
        return row

    def update_work(self, collection: str, artist_id: str, work_id: str, changes: dict[str, str | None]) -> Work:
        """Set catalogue fields of one of the artist's works in `collection` (None clears one); nothing else of it
        changes."""
        with session_scope(self._sessions) as s:
            if self._artist_row(s, collection, artist_id) is None:
                raise UnknownArtist(artist_id)
            row = self._work_row(s, collection, artist_id, work_id)
            for k, v in changes.items():
                setattr(row, k, v)
            s.flush()
            return _work(row)

    def works_with_sha256(self, collection: str, sha256: str) -> list[Work]:
        """Every work of `collection` whose original has these bytes (any artist), oldest first."""
        with self._sessions() as s:
            rows = s.scalars(
                select(WorkRow)
                .where(WorkRow.collection_id == collection, WorkRow.sha256 == sha256)
                .order_by(WorkRow.created, WorkRow.id)
            )
            return [_work(r) for r in rows]

    def works(self, collection: str, work_ids: Sequence[str]) -> dict[str, Work]:
        """The works of `collection` with these ids (missing ones, and other collections', left out), with their
        catalogue entries."""
        ids = [w for w in work_ids if storable(w)]
        with self._sessions() as s:
            rows = s.scalars(select(WorkRow).where(WorkRow.collection_id == collection, WorkRow.id.in_(ids)))
            return {r.id: _work(r) for r in rows}

    def work_path(self, collection: str, artist_id: str, work_id: str) -> str:
        """Where (relative to the data dir) the original of one of the artist's works is kept."""
        with self._sessions() as s:
            if self._artist_row(s, collection, artist_id) is None:
                raise UnknownArtist(artist_id)
            return self._work_row(s, collection, artist_id, work_id).path

    def delete_work(self, collection: str, artist_id: str, work_id: str) -> Removed:
        if not storable(artist_id):
            raise UnknownArtist(artist_id)
        if not storable(work_id):
            raise UnknownWork(artist_id, work_id)
        with session_scope(self._sessions) as s:
            committed = self._bump(s, collection)
            if self._artist_row(s, collection, artist_id) is None:
                raise UnknownArtist(artist_id)
            row = self._work_row(s, collection, artist_id, work_id)
            path = row.path
            s.execute(delete(EmbeddingRow).where(EmbeddingRow.work_id == work_id))
            s.delete(row)
        return Removed(committed, [work_id], [path])

    def unreferenced(self, paths: Sequence[str]) -> list[str]:
        """The paths among `paths` that no work (of any collection) points at any more."""
        with self._sessions() as s:
            return [rel for rel in sorted(set(paths)) if not s.scalar(select(exists().where(WorkRow.path == rel)))]


def clean_filename(name: str | None) -> str:
    """Kept as a label only (never used as a path): basename, printable, bounded."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:255]
