"""Backup and restore: one archive holding everything one collection stores, and its exact restore.

`python -m service export --collection C --out FILE` writes a tar archive of collection C (default: `default`)
— nothing of any other collection, and no operator key:

    originals/<sha256>.bin   every original once (content-addressed)
    artists.jsonl      id, name, meta, created
    works.jsonl        id, artist_id, sha256, filename, size_bytes, created, and the catalogue fields
    embeddings.jsonl   work_id, model_id, dim, vector (base64 float32 little-endian), created
    keys.jsonl         name, prefix, key_hash, scope, created_at, revoked_at (hashes only: a key never leaves)
    audit.jsonl        the decision log, oldest first
    manifest.json      LAST: format name and version, the collection (id, name, quota), counts, the models that
                       made the embeddings, the collection's version in the snapshot, the works left out (below),
                       and the sha256 of every other member

**Export is one snapshot.** Every row is read in one read transaction that sees a single committed state
(service/storage/db.py `snapshot_session`: REPEATABLE READ on PostgreSQL, one WAL snapshot on SQLite), so
enrolment and deletion may go on meanwhile. The originals are then copied for exactly the works of that snapshot;
a work deleted after it may have lost its file by then — such works (and their embeddings) are left out and named
in the manifest and the result, while a file missing for a work that still exists is `original_missing`. The
archive is checked as `import` would check it before it takes its name, so an export that succeeds imports.

**Import validates everything before it writes.** `check_archive` verifies the manifest (written last, so a
truncated archive has none) and every member's sha256, then every record: its shape and types (one pydantic model
per table, `RECORDS`), each artist through the API's own check (`artist_fields`), work ids as the service makes
them, file names as the store keeps them, key names and scopes as the key store takes them, no duplicates, every
reference resolvable (works → artists, embeddings → works, works → originals of the recorded size, no original
unreferenced), vectors of their stated dimension and finite. `restore_archive` then checks what depends on the
serving model: its embeddings must have its dimension; every original must decode as the service reads one, and
works without an embedding of the serving model are embedded now, from the archive. Only then does it write: the
originals (content-addressed, atomic) and every row in ONE transaction. A refused or failed import leaves the
target as it was (originals it created are removed again).

**The target is a collection** (`import --collection C`; default: the archive's), made with the archive's name and
quota when it does not exist, and refused when it holds artists, works or audit rows, or when the archive's works
exceed its quota (`quota_exceeded`: works or bytes, counted as enrolment counts them). An archive of the format
before collections (version 1) is one deployment's single collection, `default`. Work ids are the deployment's:
works whose ids another collection already uses (an archive restored beside the collection it came from) get new
ids, everywhere the archive names them. API keys already there win over archived ones (an archived key with the
same hash is skipped, an archived active key whose name is taken in the collection is restored revoked and
reported); an archive holds keys of scope admin or verify only. Refusals are `BackupError`s with stable codes.
Covered by tests/service/test_backup.py, tests/service/test_backup_snapshot.py and
tests/reliability/test_isolation.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field
from dataclasses import fields as dc_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, get_type_hints

import numpy as np
import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
)
from sqlalchemy.orm import Session
from tqdm import tqdm

from contract.decode import ImageError
from service.errors import QuotaExceeded, ServiceError, Unavailable
from service.serving.catalogue import checked as checked_catalogue
from service.serving.portfolios import artist_fields
from service.storage.audit import entry
from service.storage.collections import collection_fields
from service.storage.db import make_sessionmaker, snapshot_session
from service.storage.keys import Scope, key_name
from service.storage.originals import OriginalStore
from service.storage.schema import (
    AUDIT,
    CATALOGUE,
    DEFAULT_COLLECTION,
    ApiKey,
    ArtistRow,
    AuditEntry,
    CollectionRow,
    EmbeddingRow,
    WorkRow,
    audit_fields,
)
from service.storage.store import Store, clean_filename, storable

if TYPE_CHECKING:
    from service.serving.runtime import Runtime

FORMAT = "brushprint-backup"
VERSION = 2  # 2: one collection's archive (the manifest names it); 1: a deployment before collections
READABLE = (1, 2)
MANIFEST = "manifest.json"
TABLES = ("artists", "works", "embeddings", "keys", "audit")
_ORIGINAL_RE = re.compile(r"^originals/([0-9a-f]{64})\.bin$")
_CHUNK = 1 << 20
MAX_DIM = 65_536


class BackupError(Exception):
    """An archive that cannot be restored, or a target that cannot take it. `code` is stable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> BackupError:
    return BackupError("archive_invalid", message)


# ---- the records an archive holds: what export writes is what import accepts ------------------------------------
def _utc(t: datetime) -> datetime:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC)


def _storable(text: str) -> str:
    if "\x00" in text:  # PostgreSQL text cannot hold NUL, and the API never stores one
        raise ValueError("must not contain NUL characters")
    return text


def _bounded(max_length: int, min_length: int = 0) -> Any:
    """A string as a column of that length holds it (the decision log's model is made at run time)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(_storable)]


Time = Annotated[datetime, AfterValidator(_utc)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ArtistId = Annotated[str, StringConstraints(max_length=64), AfterValidator(_storable)]
Name = Annotated[str, StringConstraints(max_length=256), AfterValidator(_storable)]
WorkId = Annotated[str, StringConstraints(max_length=36), AfterValidator(_storable)]
Filename = Annotated[str, StringConstraints(max_length=255), AfterValidator(_storable)]
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_storable)]
KeyName = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_storable)]
Prefix = Annotated[str, StringConstraints(max_length=16), AfterValidator(_storable)]
CatalogueText = Annotated[str, StringConstraints(max_length=max(CATALOGUE.values())), AfterValidator(_storable)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ArtistRecord(_Record):
    id: ArtistId
    name: Name
    meta: dict[str, Any] = Field(default_factory=dict)
    created: Time


class WorkRecord(_Record):
    id: WorkId
    artist_id: ArtistId
    sha256: Hex64
    filename: Filename = ""
    size_bytes: int = Field(ge=1, le=2**31 - 1)
    created: Time
    # the catalogue entry (revision 0002; absent in older archives), each checked as the API checks it
    # (`check_records`: service/serving/catalogue.py, with each field's own length)
    title: CatalogueText | None = None
    date: CatalogueText | None = None
    medium: CatalogueText | None = None
    dimensions: CatalogueText | None = None
    inventory_number: CatalogueText | None = None
    photo_credit: CatalogueText | None = None
    notes: CatalogueText | None = None

    def catalogue(self) -> dict[str, str]:
        return {k: v for k in CATALOGUE if (v := getattr(self, k)) is not None}


class EmbeddingRecord(_Record):
    work_id: WorkId
    model_id: ModelId
    dim: int = Field(ge=1, le=MAX_DIM)
    vector: str = Field(max_length=4 * MAX_DIM * 4 // 3 + 4)  # base64 of `dim` float32 values
    created: Time

    def values(self) -> np.ndarray:
        """The vector, or ValueError when it is not `dim` finite float32 values in base64."""
        raw = base64.b64decode(self.vector, validate=True)
        if len(raw) != 4 * self.dim:
            raise ValueError(f"its vector holds {len(raw)} bytes, not {self.dim} float32 values")
        v = np.frombuffer(raw, "<f4")
        if not np.isfinite(v).all():
            raise ValueError("its vector holds values that are not finite")
        return v


class KeyRecord(_Record):
    name: KeyName
    prefix: Prefix
    key_hash: Hex64
    scope: Scope
    created_at: Time
    revoked_at: Time | None = None


_NOT_ARCHIVED = ("id", "collection_id")  # the target numbers its own rows and names its own collection


def _audit_record_model() -> type[_Record]:
    """The decision log's line: `AuditEntry`'s fields but its row id and collection (`_NOT_ARCHIVED`), each string
    bounded by its column."""
    hints = get_type_hints(AuditEntry)
    fields: dict[str, Any] = {}
    for f in audit_fields():
        if f.name in _NOT_ARCHIVED:
            continue
        tp: Any = Time if f.name == "time" else hints[f.name]
        length = getattr(f.metadata["sql_type"], "length", None)
        if length is not None:
            tp = _bounded(length) | None if type(None) in getattr(tp, "__args__", ()) else _bounded(length)
        fields[f.name] = (tp, ... if f.default is MISSING else f.default)
    return create_model("AuditLine", __base__=_Record, **fields)


AuditLine = _audit_record_model()
RECORDS: dict[str, type[_Record]] = {
    "artists": ArtistRecord,
    "works": WorkRecord,
    "embeddings": EmbeddingRecord,
    "keys": KeyRecord,
    "audit": AuditLine,
}


@dataclass
class Records:
    artists: list[ArtistRecord]
    works: list[WorkRecord]
    embeddings: list[EmbeddingRecord]
    keys: list[KeyRecord]
    audit: list[Any]  # AuditLine

    def counts(self) -> dict[str, int]:
        return {t: len(getattr(self, t)) for t in TABLES}


@dataclass(frozen=True)
class CollectionAbout:
    """The collection an archive holds, as its manifest names it."""

    id: str
    name: str
    max_works: int | None = None
    max_bytes: int | None = None


@dataclass
class ExportResult:
    path: Path
    counts: dict[str, int]
    originals: int
    bytes: int
    models: list[str]
    gallery_version: int  # the collection's version (its last write) the snapshot saw
    left_out: list[str]  # works deleted after the snapshot whose original was gone before it could be copied


@dataclass
class RestoreResult:
    collection: str  # the collection restored into
    counts: dict[str, int]
    originals: int
    models: list[str]  # model ids whose embeddings the archive held
    reembedded: int = 0  # works embedded by the serving model during the restore
    keys_skipped: list[str] = field(default_factory=list)  # already present (same hash)
    keys_revoked: list[str] = field(default_factory=list)  # active name taken in the target: restored revoked
    works_renumbered: int = 0  # work ids another collection of the target already uses (a copy): given new ids


@dataclass
class Archive:
    """A fully checked archive: its records in memory, its originals by sha256 with their sizes (read again on
    restore)."""

    path: Path
    manifest: dict[str, Any]
    collection: CollectionAbout
    records: Records
    originals: dict[str, int]


@dataclass(frozen=True)
class ServingModel:
    """What a restore needs of the model that will serve the restored gallery."""

    model_id: str
    embedding_dim: int
    read: Callable[[bytes], object]  # decodes an original as the service does; raises ImageError if it cannot
    embed_many: Callable[[list[bytes]], list[np.ndarray | Exception]]  # embeddings, or the error in its place
    batch: int = 16

    @classmethod
    def of(cls, runtime: Runtime) -> ServingModel:
        b, embedder = runtime.bundle, runtime.embedder
        return cls(
            model_id=b.model_id,
            embedding_dim=b.model.embedding_dim,
            read=embedder.decode_original,
            embed_many=lambda datas: embedder.embed_many(b, datas),
            batch=runtime.settings.batch_max_size,
        )


# ---- export -------------------------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    return None if t is None else _utc(t).isoformat()


@dataclass
class Snapshot:
    collection: CollectionAbout
    version: int
    records: dict[str, list[dict[str, Any]]]
    paths: dict[str, str]  # sha256 → where the original lies, for the snapshot's works


def _artist_lines(s: Session, collection: str) -> list[dict[str, Any]]:
    return [
        {"id": a.id, "name": a.name, "meta": dict(a.meta or {}), "created": _iso(a.created)}
        for a in s.scalars(
            sa.select(ArtistRow).where(ArtistRow.collection_id == collection).order_by(ArtistRow.created, ArtistRow.id)
        )
    ]


def _work_lines(s: Session, collection: str, paths: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for w in s.scalars(
        sa.select(WorkRow).where(WorkRow.collection_id == collection).order_by(WorkRow.created, WorkRow.id)
    ):
        paths[w.sha256] = w.path  # the path is derived from the sha256 on restore; it finds the bytes here
        out.append(
            {
                "id": w.id,
                "artist_id": w.artist_id,
                "sha256": w.sha256,
                "filename": w.filename,
                "size_bytes": w.size_bytes,
                "created": _iso(w.created),
                **{k: getattr(w, k) for k in CATALOGUE},
            }
        )
    return out


def _embedding_lines(s: Session, collection: str) -> list[dict[str, Any]]:
    return [
        {
            "work_id": e.work_id,
            "model_id": e.model_id,
            "dim": e.dim,
            "vector": base64.b64encode(e.vector).decode("ascii"),
            "created": _iso(e.created),
        }
        for e in s.scalars(
            sa.select(EmbeddingRow)
            .join(WorkRow, WorkRow.id == EmbeddingRow.work_id)
            .where(WorkRow.collection_id == collection)
            .order_by(EmbeddingRow.work_id, EmbeddingRow.model_id)
        )
    ]


def _key_lines(s: Session, collection: str) -> list[dict[str, Any]]:
    return [
        {
            "name": k.name,
            "prefix": k.prefix,
            "key_hash": k.key_hash,
            "scope": k.scope,
            "created_at": _iso(k.created_at),
            "revoked_at": _iso(k.revoked_at),
        }
        for k in s.scalars(sa.select(ApiKey).where(ApiKey.collection_id == collection).order_by(ApiKey.id))
    ]


def _audit_lines(s: Session, collection: str) -> list[dict[str, Any]]:
    names = [f.name for f in audit_fields() if f.name not in _NOT_ARCHIVED]
    out = []
    for r in s.execute(sa.select(AUDIT).where(AUDIT.c.collection_id == collection).order_by(AUDIT.c.id)):
        e = entry(r._mapping)
        out.append({n: _iso(e.time) if n == "time" else getattr(e, n) for n in names})
    return out


def read_snapshot(db: sa.Engine, collection: str = DEFAULT_COLLECTION) -> Snapshot:
    """Every table's rows of `collection` as archive lines, all read in one snapshot transaction."""
    paths: dict[str, str] = {}
    with snapshot_session(db) as s:
        row = s.get(CollectionRow, collection) if storable(collection) else None
        if row is None:
            raise BackupError("unknown_collection", f"no collection with id {collection!r}")
        about, version = CollectionAbout(row.id, row.name, row.max_works, row.max_bytes), int(row.version)
        records = {
            "artists": _artist_lines(s, collection),
            "works": _work_lines(s, collection, paths),
            "embeddings": _embedding_lines(s, collection),
            "keys": _key_lines(s, collection),
            "audit": _audit_lines(s, collection),
        }
    return Snapshot(about, version, records, paths)


def _referenced(db: sa.Engine, sha256: str) -> bool:
    """Whether a work (of any collection: they share the originals store) holds this original now (after the
    snapshot)."""
    with make_sessionmaker(db)() as s:
        return bool(s.scalar(sa.select(sa.exists().where(WorkRow.sha256 == sha256))))


class Downloads:
    """Archives written for download (GET /v1/archive): `export_archive` of one collection into a directory of its
    own under `data_dir/downloads` (the data volume, which has room for the originals), handed to the response and
    removed once sent (`remove`). One at a time per process: a second request while one is written is refused
    with 503 `export_busy` and Retry-After, so downloads cannot fill the disk or starve scoring. Directories left
    by a process that stopped mid-download are removed when the next one starts. Covered by
    tests/service/test_archive.py."""

    RETRY_AFTER = 30.0

    def __init__(self, db: sa.Engine, data_dir: str | Path):
        self.db = db
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "downloads"
        self._busy = threading.Lock()
        if self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True)

    def write(self, collection: str) -> ExportResult:
        """`collection`'s archive, written now; the caller sends `result.path` and then calls `remove`."""
        if not self._busy.acquire(blocking=False):
            raise Unavailable(
                "export_busy",
                "another archive is being written by this server; retry after Retry-After",
                retry_after=self.RETRY_AFTER,
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            where = Path(tempfile.mkdtemp(prefix="archive-", dir=self.root))
            try:
                return export_archive(self.db, self.data_dir, where / f"{collection}.tar", collection=collection)
            except BaseException:
                shutil.rmtree(where, ignore_errors=True)
                raise
        finally:
            self._busy.release()

    def remove(self, result: ExportResult) -> None:
        shutil.rmtree(result.path.parent, ignore_errors=True)


def _copy_original(store: OriginalStore, db: sa.Engine, sha256: str, path: str) -> bytes | None:
    """The original's bytes; None when every work holding it was deleted after the snapshot and the file with
    them. A file missing while a work still holds it is data loss, and the export says so."""
    for _ in range(2):  # a work deleted and the same picture enrolled again meanwhile: its file is back
        try:
            data = store.read(path)
        except FileNotFoundError:
            if not _referenced(db, sha256):
                return None
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BackupError("original_corrupt", f"stored original {path} does not hash to {sha256}")
        return data
    raise BackupError("original_missing", f"the original {path} of an existing work is missing from the data dir")


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def export_archive(
    db: sa.Engine,
    data_dir: str | Path,
    out: str | Path,
    progress: bool = False,
    collection: str = DEFAULT_COLLECTION,
) -> ExportResult:
    """Write `collection` of the deployment behind `db` + `data_dir` to `out` (atomically: a partial or
    unrestorable file never has the name). May run while the service serves and changes its gallery."""
    out = Path(out)
    if out.is_dir():
        raise BackupError("export_failed", f"{out} is a directory: name the archive file to write")
    store = OriginalStore(Path(data_dir))
    snap = read_snapshot(db, collection)
    now = datetime.now(UTC)
    files: dict[str, str] = {}
    tmp = out.with_name(f".{out.name}.part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            gone: set[str] = set()
            for sha in tqdm(sorted(snap.paths), desc="export originals", unit="file", disable=not progress):
                data = _copy_original(store, db, sha, snap.paths[sha])
                if data is None:
                    gone.add(sha)
                    continue
                files[f"originals/{sha}.bin"] = sha
                _add_bytes(tar, f"originals/{sha}.bin", data, now.timestamp())
            rec = snap.records
            left_out = [w["id"] for w in rec["works"] if w["sha256"] in gone]
            rec["works"] = [w for w in rec["works"] if w["sha256"] not in gone]
            rec["embeddings"] = [e for e in rec["embeddings"] if e["work_id"] not in set(left_out)]
            for table in TABLES:
                data = _jsonl(rec[table])
                files[f"{table}.jsonl"] = hashlib.sha256(data).hexdigest()
                _add_bytes(tar, f"{table}.jsonl", data, now.timestamp())
            models = sorted({e["model_id"] for e in rec["embeddings"]})
            counts = {t: len(rec[t]) for t in TABLES}
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "version": VERSION,
                "collection": asdict(snap.collection),
                "created": _iso(now),
                "counts": counts,
                "originals": len(snap.paths) - len(gone),
                "models": models,
                "gallery_version": snap.version,
                "left_out": left_out,
                "files": files,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), now.timestamp())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            check_archive(tmp)  # what import will check: an archive that would be refused never takes the name
        except BackupError as e:
            raise BackupError("export_unrestorable", f"the archive would be refused on import: {e.message}") from e
        os.replace(tmp, out)
    except BaseException as e:
        with contextlib.suppress(OSError):  # (not there, or its folder is not one)
            tmp.unlink()
        if isinstance(e, OSError):  # the file system's refusal (no such folder, no space, no permission), named
            raise BackupError("export_failed", f"no archive written: {e}") from e
        raise
    return ExportResult(out, counts, manifest["originals"], out.stat().st_size, models, snap.version, left_out)


# ---- reading and checking ------------------------------------------------------------------------------------
def _members(path: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    raise BackupError("archive_invalid", f"unexpected archive member {m.name!r} (not a file)")
                f = tar.extractfile(m)
                assert f is not None
                yield m, f
    except (tarfile.TarError, EOFError) as e:
        raise BackupError("archive_truncated", f"{path} is not a complete brushprint archive: {e}") from e


def _read_member(f: IO[bytes], keep: bool) -> tuple[bytes, str, int]:
    """(the bytes when `keep`, else b"", sha256, bytes read): originals are hashed in chunks, never held."""
    h, n, kept = hashlib.sha256(), 0, io.BytesIO()
    try:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
            if keep:
                kept.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as e:  # the archive ends inside this member
        raise BackupError("archive_truncated", f"the archive ends inside a member: {e}") from e
    return kept.getvalue(), h.hexdigest(), n


def _parse(table: str, data: bytes) -> list[Any]:
    model = RECORDS[table]
    out = []
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(model.model_validate_json(line))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "the line"
            raise _invalid(f"{table}.jsonl line {i}: {where}: {err['msg']}") from None
    return out


def check_archive(path: str | Path) -> Archive:
    """Read the whole archive, verify it against its manifest and check every record (see the module's
    docstring); raises BackupError, writes nothing."""
    path = Path(path)
    if not path.is_file():
        raise BackupError("archive_missing", f"no archive at {path}")
    seen: dict[str, str] = {}
    sizes: dict[str, int] = {}
    tables: dict[str, bytes] = {}
    manifest_bytes: bytes | None = None
    for m, f in _members(path):
        if manifest_bytes is not None:
            raise BackupError("archive_invalid", f"member {m.name!r} follows the manifest")
        if m.name in seen:
            raise BackupError("archive_invalid", f"member {m.name!r} appears twice")
        data, digest, n = _read_member(f, keep=not m.name.startswith("originals/"))
        if n != m.size:
            raise BackupError("archive_truncated", f"member {m.name!r} is cut short ({n} of {m.size} bytes)")
        if m.name == MANIFEST:
            manifest_bytes = data
            continue
        if m.name.endswith(".jsonl") and m.name[: -len(".jsonl")] in TABLES:
            tables[m.name[: -len(".jsonl")]] = data
        elif not _ORIGINAL_RE.match(m.name):
            raise BackupError("archive_invalid", f"unexpected archive member {m.name!r}")
        seen[m.name] = digest
        sizes[m.name] = n
    if manifest_bytes is None:
        raise BackupError("archive_truncated", f"{path} has no manifest (the archive is incomplete)")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as e:
        raise BackupError("archive_corrupt", f"the manifest is not JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("archive_invalid", f"{path} is not a {FORMAT} archive")
    if type(manifest.get("version")) is not int or manifest["version"] not in READABLE:
        raise BackupError(
            "archive_version",
            f"archive format version {manifest.get('version')!r}; this build reads {' and '.join(map(str, READABLE))}",
        )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(seen):
        missing = sorted(set(listed or {}) - set(seen))[:3]
        extra = sorted(set(seen) - set(listed or {}))[:3]
        raise BackupError(
            "archive_corrupt", f"archive members differ from the manifest (missing {missing}, extra {extra})"
        )
    bad = sorted(name for name, digest in seen.items() if listed[name] != digest)
    bad += sorted(name for name in seen if (g := _ORIGINAL_RE.match(name)) and g.group(1) != seen[name])
    if bad:
        raise BackupError("archive_corrupt", f"checksum mismatch in {len(bad)} member(s), e.g. {bad[0]!r}")
    for table in TABLES:
        if table not in tables:
            raise BackupError("archive_corrupt", f"the archive lacks {table}.jsonl")
    about = archived_collection(manifest)
    records = Records(**{t: _parse(t, tables[t]) for t in TABLES})
    originals = {g.group(1): sizes[name] for name in seen if (g := _ORIGINAL_RE.match(name))}
    check_records(records, originals)
    return Archive(path, manifest, about, records, originals)


def archived_collection(manifest: dict[str, Any]) -> CollectionAbout:
    """The collection an archive holds, checked as the operator's create checks one (version 1, before
    collections: the deployment's one, `default`)."""
    if manifest["version"] == 1:
        return CollectionAbout(DEFAULT_COLLECTION, "Default collection")
    about = manifest.get("collection")
    if not isinstance(about, dict) or set(about) != {f.name for f in dc_fields(CollectionAbout)}:
        raise _invalid("the manifest does not name the collection it holds (id, name, max_works, max_bytes)")
    try:
        return CollectionAbout(*collection_fields(about["id"], about["name"], about["max_works"], about["max_bytes"]))
    except ServiceError as err:
        raise _invalid(f"the manifest's collection: {err.code}: {err.message}") from None


def _unique(kind: str, table: str, i: int, value: Any, seen: set[Any]) -> None:
    if value in seen:
        raise _invalid(f"{table}.jsonl line {i}: {kind} {value!r} appears twice")
    seen.add(value)


def check_records(rec: Records, originals: dict[str, int]) -> None:
    """What the service would refuse, found before anything is written: ids, names and meta as the API checks
    them, duplicates, references that do not resolve, originals of the wrong size or held by no work, vectors
    that are not what they claim."""

    def refuse(table: str, i: int, what: str) -> BackupError:
        return _invalid(f"{table}.jsonl line {i}: {what}")

    artists: set[str] = set()
    for i, a in enumerate(rec.artists, 1):
        try:
            _, name, _ = artist_fields(a.id, a.name, a.meta)
        except ServiceError as err:
            raise refuse("artists", i, f"artist {a.id!r}: {err.code}: {err.message}") from None
        if name != a.name:
            raise refuse("artists", i, f"invalid_name: the API stores names trimmed, not {a.name!r}")
        _unique("artist id", "artists", i, a.id, artists)
    works: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for i, w in enumerate(rec.works, 1):
        if _canonical_uuid(w.id) != w.id:
            raise refuse("works", i, f"work id {w.id!r} is not one the service makes (a UUID)")
        _unique("work id", "works", i, w.id, works)
        if w.artist_id not in artists:
            raise refuse("works", i, f"work {w.id} names artist {w.artist_id!r}, who is not in the archive")
        _unique("(artist, sha256)", "works", i, (w.artist_id, w.sha256), pairs)
        if w.sha256 not in originals:
            raise BackupError("archive_corrupt", f"works.jsonl line {i}: work {w.id} has no original in the archive")
        if originals[w.sha256] != w.size_bytes:
            raise refuse("works", i, f"work {w.id} says {w.size_bytes} bytes; its original has {originals[w.sha256]}")
        if clean_filename(w.filename) != w.filename:
            raise refuse("works", i, f"file name {w.filename!r} is not one the store keeps")
        try:
            if checked_catalogue(w.catalogue()) != w.catalogue():
                raise refuse("works", i, f"work {w.id}: a catalogue entry is not as the API stores it (trimmed text)")
        except ServiceError as err:
            raise refuse("works", i, f"work {w.id}: {err.code}: {err.message}") from None
    unused = set(originals) - {w.sha256 for w in rec.works}
    if unused:
        raise _invalid(f"{len(unused)} original(s) belong to no work, e.g. originals/{min(unused)}.bin")
    keyed: set[tuple[str, str]] = set()
    dims: dict[str, int] = {}
    for i, emb in enumerate(rec.embeddings, 1):
        if emb.work_id not in works:
            raise refuse("embeddings", i, f"embedding of work {emb.work_id!r}, which is not in the archive")
        _unique("embedding (work, model)", "embeddings", i, (emb.work_id, emb.model_id), keyed)
        if dims.setdefault(emb.model_id, emb.dim) != emb.dim:
            raise refuse(
                "embeddings", i, f"model {emb.model_id} has embeddings of dimension {dims[emb.model_id]} and {emb.dim}"
            )
        try:
            emb.values()
        except ValueError as err:
            raise refuse("embeddings", i, f"embedding of work {emb.work_id}: {err}") from None
    hashes: set[str] = set()
    active: set[str] = set()
    for i, k in enumerate(rec.keys, 1):
        if k.scope not in (Scope.admin, Scope.verify):  # a collection's keys; an operator key is never archived
            raise refuse("keys", i, f"key {k.name!r} has scope {k.scope.value!r}, not one of a collection's")
        try:
            if key_name(k.name) != k.name:
                raise refuse("keys", i, f"key name {k.name!r} has surrounding white space")
        except ServiceError as err:
            raise refuse("keys", i, err.message) from None
        _unique("key hash", "keys", i, k.key_hash, hashes)
        if k.revoked_at is None:
            _unique("active key name", "keys", i, k.name, active)


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


# ---- restore -------------------------------------------------------------------------------------------------
def _target_empty(s: Session, collection: str) -> None:
    for table, what in ((ArtistRow.__table__, "artists"), (WorkRow.__table__, "works"), (AUDIT, "audit rows")):
        n = int(s.scalar(sa.select(sa.func.count()).select_from(table).where(table.c.collection_id == collection)) or 0)
        if n:
            raise BackupError(
                "target_not_empty", f"collection {collection!r} already holds {n} {what}; import needs an empty one"
            )


def _within_quota(s: Session, collection: str, rec: Records) -> None:
    """The archive's works fit the target collection's quota when it exists already (its own, which may be smaller
    than the archive's): enrolment's rule, `Store.check_quota`."""
    if s.get(CollectionRow, collection) is None:
        return  # made from the archive's own collection, with the archive's quota
    try:
        Store.check_quota(s, collection, len(rec.works), sum(w.size_bytes for w in rec.works))
    except QuotaExceeded as e:
        raise BackupError(e.code, f"collection {collection!r}: {e.message}") from None


def _originals(archive: Archive) -> Iterator[tuple[str, bytes]]:
    """(sha256, bytes) of every original, read again from the archive and checked again."""
    for m, f in _members(archive.path):
        g = _ORIGINAL_RE.match(m.name)
        if not g or g.group(1) not in archive.originals:
            continue
        data = f.read()
        if hashlib.sha256(data).hexdigest() != g.group(1):  # the file changed since it was checked
            raise BackupError("archive_corrupt", f"{m.name} changed while it was being restored")
        yield g.group(1), data


def _serving_embeddings(archive: Archive, serving: ServingModel, progress: bool) -> dict[str, bytes]:
    """Check every original against the serving model — it must decode as the service reads one — and embed, by
    sha256, those of works that have no embedding of that model in the archive."""
    rec = archive.records
    for i, e in enumerate(rec.embeddings, 1):
        if e.model_id == serving.model_id and e.dim != serving.embedding_dim:
            raise _invalid(
                f"embeddings.jsonl line {i}: work {e.work_id} has a {e.dim}-d embedding of {e.model_id}, "
                f"which makes {serving.embedding_dim}-d ones"
            )
    have = {e.work_id for e in rec.embeddings if e.model_id == serving.model_id}
    lacking = {w.sha256 for w in rec.works if w.id not in have}
    owner = {w.sha256: w for w in rec.works}

    def unreadable(sha: str, err: Exception) -> BackupError:
        w = owner[sha]
        what = f"{err.code}: {err.message}" if isinstance(err, ImageError) else repr(err)
        return _invalid(f"the original of work {w.id} (artist {w.artist_id!r}) cannot be read: {what}")

    vectors: dict[str, bytes] = {}
    batch: list[tuple[str, bytes]] = []

    def embed() -> None:
        for (sha, _), out in zip(batch, serving.embed_many([d for _, d in batch]), strict=True):
            if isinstance(out, Exception):
                raise unreadable(sha, out)
            vectors[sha] = np.ascontiguousarray(out, "<f4").reshape(-1).tobytes()
        bar.update(len(batch))
        batch.clear()

    with tqdm(total=len(archive.originals), desc="check originals", unit="file", disable=not progress) as bar:
        for sha, data in _originals(archive):
            if sha in lacking:
                batch.append((sha, data))
                if len(batch) >= serving.batch:
                    embed()
                continue
            try:
                serving.read(data)
            except ImageError as err:
                raise unreadable(sha, err) from None
            bar.update()
        if batch:
            embed()
    return vectors


def restore_archive(
    db: sa.Engine,
    data_dir: str | Path,
    archive: str | Path | Archive,
    serving: ServingModel,
    progress: bool = False,
    collection: str | None = None,
) -> RestoreResult:
    """Check `archive` (unless it is checked already) and what it needs of `serving`, then restore it into
    `collection` (default: the archive's) of the deployment behind `db` + `data_dir` — an empty collection, or one
    made now with the archive's name and quota — all or nothing."""
    checked = archive if isinstance(archive, Archive) else check_archive(archive)
    target = checked.collection.id if collection is None else collection
    try:
        collection_fields(target, None, None, None)
    except ServiceError as err:
        raise BackupError(err.code, err.message) from None
    rec = checked.records
    with make_sessionmaker(db)() as s:
        _target_empty(s, target)
        _within_quota(s, target, rec)  # before any work; again in the transaction that writes
    fresh = _serving_embeddings(checked, serving, progress)
    have = {e.work_id for e in rec.embeddings if e.model_id == serving.model_id}
    result = RestoreResult(
        collection=target,
        counts=rec.counts(),
        originals=len(checked.originals),
        models=sorted({e.model_id for e in rec.embeddings}),
        reembedded=sum(1 for w in rec.works if w.id not in have),
    )
    store = OriginalStore(Path(data_dir))
    created: list[str] = []
    try:
        for sha, data in tqdm(
            _originals(checked), total=len(checked.originals), desc="restore originals", disable=not progress
        ):
            rel, new = store.put(sha, data)
            if new:
                created.append(rel)
        writer = Store(db)
        with writer.write() as s:  # one transaction, counted as a change of every collection (replicas reload)
            if s.get(CollectionRow, target) is None:
                about = checked.collection
                version = writer.version_in(s)
                s.add(
                    CollectionRow(
                        id=target,
                        name=about.name,
                        max_works=about.max_works,
                        max_bytes=about.max_bytes,
                        version=version,
                    )
                )
                s.flush()
            _target_empty(s, target)  # again, inside the transaction that writes
            _within_quota(s, target, rec)
            new_ids = _renumber(s, rec)
            result.works_renumbered = len(new_ids)
            _insert_rows(s, rec, store, result, new_ids)
            now = datetime.now(UTC)
            for w in rec.works:
                if w.id not in have:
                    vec = fresh[w.sha256]
                    dim = len(vec) // 4
                    work_id = new_ids.get(w.id, w.id)
                    s.add(EmbeddingRow(work_id=work_id, model_id=serving.model_id, dim=dim, vector=vec, created=now))
            s.flush()
    except BaseException:
        for rel in created:
            store.remove(rel)
        raise
    return result


def _renumber(s: Session, rec: Records) -> dict[str, str]:
    """Work ids are the deployment's: new ids (old → new) for the archive's works whose ids the target already
    uses (in another collection: an archive restored beside the collection it came from)."""
    ids = [w.id for w in rec.works]
    taken: set[str] = set()
    for start in range(0, len(ids), 500):
        taken |= set(s.scalars(sa.select(WorkRow.id).where(WorkRow.id.in_(ids[start : start + 500]))))
    return {old: str(uuid.uuid4()) for old in sorted(taken)}


def _insert_rows(
    s: Session, rec: Records, store: OriginalStore, result: RestoreResult, new_ids: dict[str, str]
) -> None:
    collection = result.collection
    for a in rec.artists:
        s.add(ArtistRow(collection_id=collection, id=a.id, name=a.name, meta=a.meta, created=a.created))
    s.flush()
    for w in rec.works:
        s.add(
            WorkRow(
                id=new_ids.get(w.id, w.id),
                collection_id=collection,
                artist_id=w.artist_id,
                sha256=w.sha256,
                filename=w.filename,
                path=store.relpath(w.sha256),
                size_bytes=w.size_bytes,
                created=w.created,
                **w.catalogue(),
            )
        )
    s.flush()
    for e in rec.embeddings:
        s.add(
            EmbeddingRow(
                work_id=new_ids.get(e.work_id, e.work_id),
                model_id=e.model_id,
                dim=e.dim,
                vector=e.values().tobytes(),
                created=e.created,
            )
        )
    existing = {k.key_hash: k for k in s.scalars(sa.select(ApiKey))}
    active_names = {k.name for k in existing.values() if k.revoked_at is None and k.collection_id == collection}
    for k in rec.keys:
        if k.key_hash in existing:
            result.keys_skipped.append(k.name)
            continue
        revoked = k.revoked_at
        if revoked is None and k.name in active_names:
            revoked = datetime.now(UTC)
            result.keys_revoked.append(k.name)
        elif revoked is None:
            active_names.add(k.name)
        s.add(
            ApiKey(
                collection_id=collection,
                name=k.name,
                prefix=k.prefix,
                key_hash=k.key_hash,
                scope=k.scope.value,
                created_at=k.created_at,
                revoked_at=revoked,
            )
        )
    if rec.audit:
        renamed = [n for n in ("work_id", "same_work_as") if n in AuditLine.model_fields]
        rows = []
        for line in rec.audit:
            row = {**line.model_dump(), "collection_id": collection}
            for n in renamed:
                row[n] = new_ids.get(row[n], row[n]) if row[n] is not None else None
            rows.append(row)
        s.execute(AUDIT.insert(), rows)
    s.flush()
