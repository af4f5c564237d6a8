"""The portfolio store: artists, works, their embeddings (SQLAlchemy), originals on disk, and a faiss index.

- Originals are content-addressed (`data_dir/originals/ab/<sha256>.bin`) and written atomically (tmp file,
  fsync, rename, fsync dir) *before* the database commit, so a committed work always has its bytes; a failed
  enrolment removes the files it created. Enrolling several files is one transaction: all or nothing.
- Embeddings are tagged with the model id. Only the current model's embeddings are ever loaded, so two models
  are never mixed; works lacking one are counted (`missing`) and `reindex()` fills them from the originals.
- In memory: the reference vectors (projection of the embedding for symmetric heads, else the embedding) of
  every work in row order, a faiss IndexFlatIP over their L2-normalised copies (on GPU when faiss sees one),
  and per-artist slices for verify. All of it is rebuilt from the store at start and updated under one lock
  after every committed change; the lock also serialises writes, so the store and the index never disagree
  within this process. Processes sharing one database (replicas on PostgreSQL, the CLI) each hold their own
  index: every write bumps a counter row (`gallery_state`), and `sync()` reloads when another process moved it.
Covered by tests/service/test_gallery.py.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import Engine as SqlEngine
from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import (
    ArtistRow,
    EmbeddingRow,
    GalleryStateRow,
    WorkRow,
    init_db,
    make_sessionmaker,
    session_scope,
    utcnow,
)
from service.errors import ApiError

log = logging.getLogger(__name__)

ARTIST_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ReferenceFn = Callable[[np.ndarray], np.ndarray]


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


@dataclass(frozen=True)
class NewWork:
    """A validated upload ready to enrol: its bytes, their sha256 and its embedding under the current model."""

    filename: str
    data: bytes
    sha256: str
    embedding: np.ndarray


@dataclass(frozen=True)
class Portfolio:
    artist_id: str
    work_ids: list[str]
    vectors: np.ndarray  # reference vectors [n, R]


@dataclass(frozen=True)
class Hit:
    work_id: str
    artist_id: str
    similarity: float


@dataclass
class ReindexResult:
    embedded: int = 0
    failed: list[str] = field(default_factory=list)  # work ids whose original is missing or unreadable
    pruned: int = 0


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
    )


def unknown_artist(artist_id: str) -> ApiError:
    return ApiError(404, "unknown_artist", f"no artist with id {artist_id!r}")


def storable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL (SQLite can): such a value is never stored, so it never matches a row, and
    sending it to PostgreSQL would fail the statement (a 500) instead of answering."""
    return "\x00" not in text


class OriginalStore:
    """Uploaded bytes, content-addressed under `root` so identical uploads share one file."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "originals"

    def relpath(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256 hex digest")
        return f"originals/{sha256[:2]}/{sha256}.bin"

    def put(self, sha256: str, data: bytes) -> tuple[str, bool]:
        """Write atomically; returns (relative path, whether this call created the file)."""
        rel = self.relpath(sha256)
        target = self.data_dir / rel
        if target.is_file():
            return rel, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return rel, True

    def read(self, rel: str) -> bytes:
        return (self.data_dir / rel).read_bytes()

    def remove(self, rel: str) -> None:
        (self.data_dir / rel).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


class ReferenceIndex:
    """Reference vectors in row order + faiss inner-product index over their normalised copies."""

    def __init__(self, dim: int, use_gpu: bool):
        self.dim = dim
        self.use_gpu = use_gpu
        if not use_gpu:
            # Every search here is one query over a flat index: faiss's OpenMP threads only add fork/join cost
            # and fight onnxruntime for the cores (bench/identify_scaling.py: 2 threads lost to numpy, 1 won).
            faiss.omp_set_num_threads(1)
        self.work_ids: list[str] = []
        self.artist_ids: list[str] = []
        self.vectors = np.zeros((0, dim), np.float32)
        self._index = self._new_index(self.vectors)
        self._rows_by_artist: dict[str, np.ndarray] | None = None

    def _new_index(self, vectors: np.ndarray) -> faiss.Index:
        index: faiss.Index = faiss.IndexFlatIP(self.dim)
        if self.use_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        if len(vectors):
            index.add(_normalised(vectors))
        return index

    def __len__(self) -> int:
        return len(self.work_ids)

    def reset(self, work_ids: list[str], artist_ids: list[str], vectors: np.ndarray) -> None:
        self.work_ids, self.artist_ids = list(work_ids), list(artist_ids)
        self.vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        self._index = self._new_index(self.vectors)
        self._rows_by_artist = None

    def add(self, work_ids: list[str], artist_ids: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        self.work_ids += work_ids
        self.artist_ids += artist_ids
        self.vectors = np.concatenate([self.vectors, vectors])
        self._index.add(_normalised(vectors))
        self._rows_by_artist = None

    def remove(self, work_ids: set[str]) -> None:
        keep = [i for i, w in enumerate(self.work_ids) if w not in work_ids]
        if len(keep) == len(self.work_ids):
            return
        # a flat index is rebuilt in one pass; cheaper and GPU-friendlier than remove_ids bookkeeping
        self.reset([self.work_ids[i] for i in keep], [self.artist_ids[i] for i in keep], self.vectors[keep])

    def rows_of(self, artist_id: str) -> np.ndarray:
        if self._rows_by_artist is None:
            groups: dict[str, list[int]] = {}
            for i, a in enumerate(self.artist_ids):
                groups.setdefault(a, []).append(i)
            self._rows_by_artist = {a: np.asarray(r, np.int64) for a, r in groups.items()}
        return self._rows_by_artist.get(artist_id, np.zeros((0,), np.int64))

    def search(self, query: np.ndarray, n: int) -> list[Hit]:
        n = min(n, len(self.work_ids))
        if n <= 0:
            return []
        sims, rows = self._index.search(_normalised(query.reshape(1, -1)), n)
        return [
            Hit(self.work_ids[r], self.artist_ids[r], float(s)) for s, r in zip(sims[0], rows[0], strict=True) if r >= 0
        ]

    def check(self) -> None:
        """Internal consistency (used by tests): faiss holds exactly the rows we think it does."""
        assert self._index.ntotal == len(self.work_ids) == len(self.artist_ids) == len(self.vectors)


def _normalised(v: np.ndarray) -> np.ndarray:
    out = np.array(v, dtype=np.float32, copy=True, order="C").reshape(-1, v.shape[-1])
    faiss.normalize_L2(out)
    return out


def gpu_available() -> bool:
    try:
        return faiss.get_num_gpus() > 0
    except AttributeError:  # faiss-cpu builds may lack the symbol
        return False


class Gallery:
    def __init__(
        self,
        db: SqlEngine,
        data_dir: str | Path,
        model_id: str,
        embedding_dim: int,
        reference_dim: int,
        reference_fn: ReferenceFn,
        use_gpu: bool | None = None,
    ):
        self.db = db
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self.embedding_dim = embedding_dim
        self.reference_fn = reference_fn
        self.originals = OriginalStore(self.data_dir)
        self._sessions = make_sessionmaker(db)
        self._lock = threading.RLock()
        self.index = ReferenceIndex(reference_dim, gpu_available() if use_gpu is None else use_gpu)
        self.missing = 0
        self._version = -1  # the gallery_state version the in-memory index reflects
        init_db(db)
        self._ensure_state_row()
        self.load()

    def _ensure_state_row(self) -> None:
        try:
            with session_scope(self._sessions) as s:
                if s.get(GalleryStateRow, 1) is None:
                    s.add(GalleryStateRow(id=1, version=0))
        except IntegrityError:
            pass  # another process starting at the same time inserted it

    @staticmethod
    def _read_version(s: Session) -> int:
        return int(s.scalar(select(GalleryStateRow.version).where(GalleryStateRow.id == 1)) or 0)

    @staticmethod
    def _bump(s: Session) -> int:
        """Count this transaction as a change (first thing in it: the row lock then orders writers)."""
        s.execute(update(GalleryStateRow).where(GalleryStateRow.id == 1).values(version=GalleryStateRow.version + 1))
        return Gallery._read_version(s)

    def _applied(self, version: int) -> bool:
        """After committing the change that made `version`: True when the index was at the version just before,
        so updating it in place is exact; else another process wrote too, and the caller reloads instead."""
        if version == self._version + 1:
            self._version = version
            return True
        return False

    def sync(self) -> None:
        """Reload if another process sharing the database changed works or embeddings since the last load."""
        if self._current_version() == self._version:
            return  # the common case, without waiting on the lock behind a write in progress
        with self._lock:
            # re-read: the difference may have been this process's own write, applied while we waited
            if self._current_version() != self._version:
                self.load()

    def _current_version(self) -> int:
        with self._sessions() as s:
            return self._read_version(s)

    # ---- state ------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild the in-memory vectors and the faiss index from the store (current model only)."""
        with self._lock, self._sessions() as s:
            # read first: a change committed between the two reads is then loaded and reloaded, never missed
            version = self._read_version(s)
            rows = s.execute(
                select(WorkRow.id, WorkRow.artist_id, EmbeddingRow.vector, EmbeddingRow.dim)
                .join(EmbeddingRow, and_(EmbeddingRow.work_id == WorkRow.id, EmbeddingRow.model_id == self.model_id))
                .order_by(WorkRow.created, WorkRow.id)
            ).all()
            emb = np.zeros((len(rows), self.embedding_dim), np.float32)
            for i, r in enumerate(rows):
                if r.dim != self.embedding_dim:
                    raise RuntimeError(
                        f"embedding of work {r.id} has dim {r.dim}; model {self.model_id} makes {emb.shape[1]}"
                    )
                emb[i] = np.frombuffer(r.vector, dtype="<f4")
            self.index.reset([r.id for r in rows], [r.artist_id for r in rows], self._references(emb))
            self.missing = self._count_missing(s)
            self._version = version
        log.info("gallery: %d references loaded for %s, %d works need reindex", len(rows), self.model_id, self.missing)

    def _references(self, emb: np.ndarray, chunk: int = 256) -> np.ndarray:
        parts = [self.reference_fn(emb[i : i + chunk]) for i in range(0, len(emb), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.index.dim), np.float32)

    def _lacking_embedding(self):  # type: ignore[no-untyped-def]
        has = exists().where(and_(EmbeddingRow.work_id == WorkRow.id, EmbeddingRow.model_id == self.model_id))
        return ~has

    def _count_missing(self, s: Session) -> int:
        return int(s.scalar(select(func.count(WorkRow.id)).where(self._lacking_embedding())) or 0)

    @property
    def reindex_required(self) -> bool:
        return self.missing > 0

    def ping(self) -> bool:
        try:
            with self._sessions() as s:
                s.execute(select(1))
            return True
        except Exception:
            log.exception("gallery: store unreachable")
            return False

    # ---- artists ----------------------------------------------------------------------------------------
    def create_artist(self, artist_id: str, name: str, meta: dict | None = None) -> Artist:
        if not isinstance(artist_id, str) or not ARTIST_ID_RE.fullmatch(artist_id):
            raise ApiError(
                422, "invalid_artist_id", "artist id must be 1–64 characters of letters, digits, '_', '.', '-'"
            )
        if not storable(name):
            raise ApiError(422, "invalid_request", "name must not contain NUL characters")
        with self._lock:
            try:
                with session_scope(self._sessions) as s:
                    if s.get(ArtistRow, artist_id) is not None:
                        raise ApiError(409, "artist_exists", f"artist {artist_id!r} already exists")
                    row = ArtistRow(id=artist_id, name=name, meta=dict(meta or {}))
                    s.add(row)
                    s.flush()
                    return _artist(row, 0)
            except IntegrityError as e:
                raise ApiError(409, "artist_exists", f"artist {artist_id!r} already exists") from e

    def get_artist(self, artist_id: str) -> Artist:
        """Also brings the index up to date with other processes' writes: verify calls it (off the event loop)
        just before it reads the portfolio."""
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        self.sync()
        with self._sessions() as s:
            row = s.get(ArtistRow, artist_id)
            if row is None:
                raise unknown_artist(artist_id)
            n = s.scalar(select(func.count(WorkRow.id)).where(WorkRow.artist_id == artist_id)) or 0
            return _artist(row, int(n))

    def artist_names(self, artist_ids: Sequence[str]) -> dict[str, str]:
        with self._sessions() as s:
            rows = s.execute(select(ArtistRow.id, ArtistRow.name).where(ArtistRow.id.in_(list(artist_ids)))).all()
            return {r.id: r.name for r in rows}

    def list_artists(self, offset: int = 0, limit: int = 50) -> tuple[list[Artist], int]:
        counts = select(WorkRow.artist_id, func.count(WorkRow.id).label("n")).group_by(WorkRow.artist_id).subquery()
        with self._sessions() as s:
            total = int(s.scalar(select(func.count(ArtistRow.id))) or 0)
            rows = s.execute(
                select(ArtistRow, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.artist_id == ArtistRow.id)
                .order_by(ArtistRow.created, ArtistRow.id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [_artist(a, int(n)) for a, n in rows], total

    def delete_artist(self, artist_id: str) -> None:
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        with self._lock:
            with session_scope(self._sessions) as s:
                version = self._bump(s)
                row = s.get(ArtistRow, artist_id)
                if row is None:
                    raise unknown_artist(artist_id)
                works = s.execute(select(WorkRow.id, WorkRow.path).where(WorkRow.artist_id == artist_id)).all()
                # explicit deletes, child first: correct whether or not the backend enforces ON DELETE CASCADE
                ids = [w.id for w in works]
                if ids:
                    s.execute(delete(EmbeddingRow).where(EmbeddingRow.work_id.in_(ids)))
                    s.execute(delete(WorkRow).where(WorkRow.id.in_(ids)))
                s.delete(row)
            if self._applied(version):
                self.index.remove(set(ids))
            else:
                self.load()
            self._after_delete([w.path for w in works])

    # ---- works ------------------------------------------------------------------------------------------
    def add_works(self, artist_id: str, items: Sequence[NewWork]) -> list[Work]:
        if not items:
            raise ApiError(422, "no_files", "no image was uploaded")
        seen: dict[str, str] = {}
        for it in items:
            if it.sha256 in seen:
                raise ApiError(
                    409, "duplicate_work", f"{it.filename!r} has the same content as {seen[it.sha256]!r} in this upload"
                )
            seen[it.sha256] = it.filename
            if it.embedding.shape != (self.embedding_dim,):
                raise ValueError(f"embedding shape {it.embedding.shape}, expected ({self.embedding_dim},)")
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        refs = self.reference_fn(np.stack([it.embedding for it in items]).astype(np.float32))
        created_files: list[str] = []
        with self._lock:
            try:
                with session_scope(self._sessions) as s:
                    version = self._bump(s)
                    if s.get(ArtistRow, artist_id) is None:
                        raise unknown_artist(artist_id)
                    dup = s.execute(
                        select(WorkRow.id, WorkRow.sha256).where(
                            WorkRow.artist_id == artist_id, WorkRow.sha256.in_(list(seen))
                        )
                    ).first()
                    if dup is not None:
                        raise ApiError(
                            409,
                            "duplicate_work",
                            f"{seen[dup.sha256]!r} is already in artist {artist_id!r}'s portfolio as work {dup.id}",
                        )
                    rows = []
                    now = utcnow()
                    for i, it in enumerate(items):
                        rel, created = self.originals.put(it.sha256, it.data)
                        if created:
                            created_files.append(rel)
                        work = WorkRow(
                            artist_id=artist_id,
                            sha256=it.sha256,
                            filename=_clean_filename(it.filename),
                            path=rel,
                            size_bytes=len(it.data),
                            # listings order by creation time: a microsecond apart keeps the upload order
                            created=now + timedelta(microseconds=i),
                        )
                        work.embeddings.append(
                            EmbeddingRow(
                                model_id=self.model_id,
                                dim=self.embedding_dim,
                                vector=np.ascontiguousarray(it.embedding, "<f4").tobytes(),
                            )
                        )
                        s.add(work)
                        rows.append(work)
                    s.flush()
                    result = [_work(r) for r in rows]
            except BaseException as e:
                for rel in created_files:
                    self.originals.remove(rel)
                if isinstance(e, IntegrityError):
                    raise ApiError(409, "duplicate_work", "this work is already in the portfolio") from e
                raise
            if self._applied(version):
                self.index.add([w.id for w in result], [artist_id] * len(result), refs)
            else:
                self.load()
        return result

    def list_works(self, artist_id: str) -> list[Work]:
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        with self._sessions() as s:
            if s.get(ArtistRow, artist_id) is None:
                raise unknown_artist(artist_id)
            rows = s.scalars(
                select(WorkRow).where(WorkRow.artist_id == artist_id).order_by(WorkRow.created, WorkRow.id)
            ).all()
            return [_work(r) for r in rows]

    def original(self, artist_id: str, work_id: str) -> bytes:
        """The uploaded bytes of one of the artist's works (for thumbnails)."""
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        with self._sessions() as s:
            if s.get(ArtistRow, artist_id) is None:
                raise unknown_artist(artist_id)
            row = s.get(WorkRow, work_id) if storable(work_id) else None
            if row is None or row.artist_id != artist_id:
                raise ApiError(404, "unknown_work", f"artist {artist_id!r} has no work {work_id!r}")
            path = row.path
        try:
            return self.originals.read(path)
        except OSError as e:
            raise ApiError(404, "unknown_work", f"the original of work {work_id!r} is missing from the store") from e

    def delete_work(self, artist_id: str, work_id: str) -> None:
        if not storable(artist_id):
            raise unknown_artist(artist_id)
        if not storable(work_id):
            raise ApiError(404, "unknown_work", f"artist {artist_id!r} has no work {work_id!r}")
        with self._lock:
            with session_scope(self._sessions) as s:
                version = self._bump(s)
                if s.get(ArtistRow, artist_id) is None:
                    raise unknown_artist(artist_id)
                row = s.get(WorkRow, work_id)
                if row is None or row.artist_id != artist_id:
                    raise ApiError(404, "unknown_work", f"artist {artist_id!r} has no work {work_id!r}")
                path = row.path
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.work_id == work_id))
                s.delete(row)
            if self._applied(version):
                self.index.remove({work_id})
            else:
                self.load()
            self._after_delete([path])

    def _after_delete(self, paths: list[str]) -> None:
        """Drop originals no remaining work points at; recount works that lack an embedding."""
        with self._sessions() as s:
            for rel in set(paths):
                if not s.scalar(select(exists().where(WorkRow.path == rel))):
                    self.originals.remove(rel)
            self.missing = self._count_missing(s)

    # ---- scoring support --------------------------------------------------------------------------------
    def portfolio(self, artist_id: str) -> Portfolio:
        with self._lock:
            rows = self.index.rows_of(artist_id)
            return Portfolio(artist_id, [self.index.work_ids[i] for i in rows], self.index.vectors[rows])

    def search(self, query_vec: np.ndarray, n: int) -> list[Hit]:
        """Syncs with other processes first (identify calls it off the event loop)."""
        with self._lock:
            self.sync()
            return self.index.search(np.asarray(query_vec, np.float32), n)

    def __len__(self) -> int:
        return len(self.index)

    # ---- model change -----------------------------------------------------------------------------------
    def reindex(
        self, embed_many: Callable[[list[bytes]], list[np.ndarray | Exception]], batch: int = 16, prune: bool = False
    ) -> ReindexResult:
        """Embed, from their originals, every work lacking an embedding of the current model; then reload.

        Works whose original is missing or no longer decodes are listed in `failed` and keep the service in
        "reindex required" until they are deleted. `prune` drops embeddings of other models.
        """
        result = ReindexResult()
        with self._sessions() as s:
            todo = s.execute(
                select(WorkRow.id, WorkRow.path).where(self._lacking_embedding()).order_by(WorkRow.id)
            ).all()
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            datas: list[bytes | None] = []
            for w in chunk:
                try:
                    datas.append(self.originals.read(w.path))
                except OSError:
                    datas.append(None)
            readable = [d for d in datas if d is not None]
            embedded = iter(embed_many(readable) if readable else [])
            rows = []
            for w, d in zip(chunk, datas, strict=True):
                e = next(embedded) if d is not None else None
                if e is None or isinstance(e, Exception):
                    log.warning("reindex: work %s cannot be embedded: %s", w.id, e or "original missing")
                    result.failed.append(w.id)
                    continue
                vec = np.ascontiguousarray(e, "<f4").reshape(-1)
                rows.append(EmbeddingRow(work_id=w.id, model_id=self.model_id, dim=len(vec), vector=vec.tobytes()))
            with self._lock, session_scope(self._sessions) as s:
                self._bump(s)
                s.add_all(rows)
            result.embedded += len(rows)
        if prune:
            with self._lock, session_scope(self._sessions) as s:
                self._bump(s)
                stale = select(func.count()).select_from(EmbeddingRow).where(EmbeddingRow.model_id != self.model_id)
                result.pruned = int(s.scalar(stale) or 0)
                s.execute(delete(EmbeddingRow).where(EmbeddingRow.model_id != self.model_id))
        self.load()
        return result


def _clean_filename(name: str | None) -> str:
    """Kept as a label only (never used as a path): basename, printable, bounded."""
    base = os.path.basename((name or "").replace("\\", "/"))
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:255]
