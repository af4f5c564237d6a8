"""Backup and restore: one archive holding everything a deployment stores, and its exact restore.

`python -m service export --out FILE` writes a tar archive:

    artists.jsonl      id, name, meta, created
    works.jsonl        id, artist_id, sha256, filename, size_bytes, created, and the catalogue fields
    embeddings.jsonl   work_id, model_id, dim, vector (base64 float32 little-endian), created
    keys.jsonl         name, prefix, key_hash, scope, created_at, revoked_at (hashes only: a key never leaves)
    audit.jsonl        the decision log, oldest first
    originals/<sha256>.bin   every original once (content-addressed)
    manifest.json      LAST: format name and version, counts, the model that made the embeddings, and the sha256
                       of every other member

The manifest is written last, so a truncated archive has none and is refused; every member is hashed on read
and compared with the manifest, so a flipped byte is refused too. `restore` checks the whole archive before it
writes anything, writes the originals (content-addressed, atomic) and then every row in ONE transaction: a
refused or failed import leaves the target as it was (originals it created are removed again). The target must
be empty (no artists, works or audit rows); API keys already there win over archived ones (an archived key with
the same hash is skipped, an archived active key whose name is taken is restored revoked and reported).
Embeddings of the serving model are restored as they were (identical answers); when the archive's embeddings
are of another model, the caller re-embeds from the restored originals (`Runtime.reindex`).
Covered by tests/service/test_backup.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from tqdm import tqdm

from service.storage.audit import entry
from service.storage.db import make_sessionmaker
from service.storage.originals import OriginalStore
from service.storage.schema import AUDIT, CATALOGUE, ApiKey, ArtistRow, EmbeddingRow, WorkRow, audit_fields
from service.storage.store import Store

FORMAT = "brushprint-backup"
VERSION = 1
MANIFEST = "manifest.json"
TABLES = ("artists", "works", "embeddings", "keys", "audit")
_ORIGINAL_RE = re.compile(r"^originals/([0-9a-f]{64})\.bin$")
_CHUNK = 1 << 20


class BackupError(Exception):
    """An archive that cannot be restored, or a target that cannot take it. `code` is stable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ExportResult:
    path: Path
    counts: dict[str, int]
    originals: int
    bytes: int
    models: list[str]


@dataclass
class RestoreResult:
    counts: dict[str, int]
    originals: int
    models: list[str]  # model ids whose embeddings the archive held
    keys_skipped: list[str] = field(default_factory=list)  # already present (same hash)
    keys_revoked: list[str] = field(default_factory=list)  # active name taken in the target: restored revoked


@dataclass
class Archive:
    """A fully checked archive: its records in memory, its originals listed by sha256 (read again on restore)."""

    path: Path
    manifest: dict[str, Any]
    records: dict[str, list[dict[str, Any]]]
    originals: set[str]


# ---- export -------------------------------------------------------------------------------------------------
def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(str(value))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _snapshot(s: Session) -> dict[str, list[dict[str, Any]]]:
    artists = [
        {"id": a.id, "name": a.name, "meta": dict(a.meta or {}), "created": _iso(a.created)}
        for a in s.scalars(sa.select(ArtistRow).order_by(ArtistRow.created, ArtistRow.id))
    ]
    works = [
        {
            "id": w.id,
            "artist_id": w.artist_id,
            "sha256": w.sha256,
            "filename": w.filename,
            "size_bytes": w.size_bytes,
            "created": _iso(w.created),
            **{k: getattr(w, k) for k in CATALOGUE},
        }
        for w in s.scalars(sa.select(WorkRow).order_by(WorkRow.created, WorkRow.id))
    ]
    embeddings = [
        {
            "work_id": e.work_id,
            "model_id": e.model_id,
            "dim": e.dim,
            "vector": base64.b64encode(e.vector).decode("ascii"),
            "created": _iso(e.created),
        }
        for e in s.scalars(sa.select(EmbeddingRow).order_by(EmbeddingRow.work_id, EmbeddingRow.model_id))
    ]
    keys = [
        {
            "name": k.name,
            "prefix": k.prefix,
            "key_hash": k.key_hash,
            "scope": k.scope,
            "created_at": _iso(k.created_at),
            "revoked_at": _iso(k.revoked_at),
        }
        for k in s.scalars(sa.select(ApiKey).order_by(ApiKey.id))
    ]
    audit = [_audit_record(entry(r._mapping)) for r in s.execute(sa.select(AUDIT).order_by(AUDIT.c.id))]
    # the path column is derived from the sha256 on restore; read it here to find each original's bytes
    paths = dict(s.execute(sa.select(WorkRow.sha256, WorkRow.path)).tuples().all())
    return {
        "artists": artists,
        "works": works,
        "embeddings": embeddings,
        "keys": keys,
        "audit": audit,
        "_paths": [{"sha256": k, "path": v} for k, v in paths.items()],
    }


def _audit_record(e: Any) -> dict[str, Any]:
    """An audit entry as archived: every declared field but the row id (the target numbers its own rows)."""
    return {f.name: _iso(e.time) if f.name == "time" else getattr(e, f.name) for f in audit_fields() if f.name != "id"}


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in rows)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def export_archive(db: sa.Engine, data_dir: str | Path, out: str | Path, progress: bool = False) -> ExportResult:
    """Write the deployment behind `db` + `data_dir` to `out` (atomically: a partial file never has the name).

    Reads one consistent snapshot (one transaction, REPEATABLE READ on PostgreSQL), so it may run while the
    service serves."""
    out = Path(out)
    store = OriginalStore(Path(data_dir))
    sessions = make_sessionmaker(db)
    with sessions() as s:
        if db.dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        snap = _snapshot(s)
    paths = {p["sha256"]: p["path"] for p in snap.pop("_paths")}
    now = datetime.now(UTC)
    files: dict[str, str] = {}
    tmp = out.with_name(f".{out.name}.part")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for table in TABLES:
                data = _jsonl(snap[table])
                files[f"{table}.jsonl"] = hashlib.sha256(data).hexdigest()
                _add_bytes(tar, f"{table}.jsonl", data, now.timestamp())
            shas = sorted(paths)
            for sha in tqdm(shas, desc="export originals", unit="file", disable=not progress):
                data = store.read(paths[sha])
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha:
                    raise BackupError("original_corrupt", f"stored original {paths[sha]} does not hash to {sha}")
                files[f"originals/{sha}.bin"] = digest
                _add_bytes(tar, f"originals/{sha}.bin", data, now.timestamp())
            models = sorted({e["model_id"] for e in snap["embeddings"]})
            counts = {t: len(snap[t]) for t in TABLES}
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "version": VERSION,
                "created": _iso(now),
                "counts": counts,
                "originals": len(shas),
                "models": models,
                "files": files,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode(), now.timestamp())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(out, counts, len(shas), out.stat().st_size, models)


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


def check_archive(path: str | Path) -> Archive:
    """Read the whole archive and verify it against its manifest; raises BackupError, writes nothing."""
    path = Path(path)
    if not path.is_file():
        raise BackupError("archive_missing", f"no archive at {path}")
    seen: dict[str, str] = {}
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
    if manifest_bytes is None:
        raise BackupError("archive_truncated", f"{path} has no manifest (the archive is incomplete)")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as e:
        raise BackupError("archive_corrupt", f"the manifest is not JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("archive_invalid", f"{path} is not a {FORMAT} archive")
    if manifest.get("version") != VERSION:
        raise BackupError(
            "archive_version", f"archive format version {manifest.get('version')!r}; this build reads {VERSION}"
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
    records: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        if table not in tables:
            raise BackupError("archive_corrupt", f"the archive lacks {table}.jsonl")
        try:
            records[table] = [json.loads(line) for line in tables[table].decode().splitlines() if line]
        except ValueError as e:
            raise BackupError("archive_corrupt", f"{table}.jsonl is not JSON lines: {e}") from e
    originals = {g.group(1) for name in seen if (g := _ORIGINAL_RE.match(name))}
    missing_originals = {w["sha256"] for w in records["works"]} - originals
    if missing_originals:
        raise BackupError("archive_corrupt", f"{len(missing_originals)} works have no original in the archive")
    return Archive(path, manifest, records, originals)


# ---- restore -------------------------------------------------------------------------------------------------
def _target_empty(s: Session) -> None:
    for row, what in ((ArtistRow.__table__, "artists"), (WorkRow.__table__, "works"), (AUDIT, "audit rows")):
        n = int(s.scalar(sa.select(sa.func.count()).select_from(row)) or 0)
        if n:
            raise BackupError(
                "target_not_empty", f"the target deployment already holds {n} {what}; import needs an empty one"
            )


def restore_archive(db: sa.Engine, data_dir: str | Path, archive: str | Path, progress: bool = False) -> RestoreResult:
    """Check `archive`, then restore it into the empty deployment behind `db` + `data_dir`, all or nothing."""
    checked = check_archive(archive)
    sessions = make_sessionmaker(db)
    with sessions() as s:
        _target_empty(s)
    store = OriginalStore(Path(data_dir))
    created: list[str] = []
    rec = checked.records
    result = RestoreResult(
        counts={t: len(rec[t]) for t in TABLES}, originals=len(checked.originals), models=checked.manifest["models"]
    )
    try:
        todo = sorted(checked.originals)
        bar = tqdm(total=len(todo), desc="restore originals", unit="file", disable=not progress)
        wanted = set(todo)
        for m, f in _members(checked.path):
            g = _ORIGINAL_RE.match(m.name)
            if not g or g.group(1) not in wanted:
                continue
            data = f.read()
            if hashlib.sha256(data).hexdigest() != g.group(1):  # the file changed since it was checked
                raise BackupError("archive_corrupt", f"{m.name} changed while it was being restored")
            rel, new = store.put(g.group(1), data)
            if new:
                created.append(rel)
            bar.update()
        bar.close()
        with Store(db).write() as s:  # one transaction, counted as a change (running replicas reload)
            _target_empty(s)  # again, inside the transaction that writes
            _insert_rows(s, rec, store, result)
    except BaseException:
        for rel in created:
            store.remove(rel)
        raise
    return result


def _insert_rows(s: Session, rec: dict[str, list[dict[str, Any]]], store: OriginalStore, result: RestoreResult) -> None:
    try:
        for a in rec["artists"]:
            s.add(ArtistRow(id=a["id"], name=a["name"], meta=a.get("meta") or {}, created=_time(a["created"])))
        s.flush()
        for w in rec["works"]:
            s.add(
                WorkRow(
                    id=w["id"],
                    artist_id=w["artist_id"],
                    sha256=w["sha256"],
                    filename=w.get("filename", ""),
                    path=store.relpath(w["sha256"]),
                    size_bytes=int(w["size_bytes"]),
                    created=_time(w["created"]),
                    **{k: w.get(k) for k in CATALOGUE},
                )
            )
        s.flush()
        for e in rec["embeddings"]:
            vector = base64.b64decode(e["vector"], validate=True)
            if len(vector) != 4 * int(e["dim"]):
                raise BackupError("archive_corrupt", f"embedding of work {e['work_id']} has the wrong length")
            s.add(
                EmbeddingRow(
                    work_id=e["work_id"],
                    model_id=e["model_id"],
                    dim=int(e["dim"]),
                    vector=vector,
                    created=_time(e["created"]),
                )
            )
        existing = {k.key_hash: k for k in s.scalars(sa.select(ApiKey))}
        active_names = {k.name for k in existing.values() if k.revoked_at is None}
        for k in rec["keys"]:
            if k["key_hash"] in existing:
                result.keys_skipped.append(k["name"])
                continue
            revoked = _time(k.get("revoked_at"))
            if revoked is None and k["name"] in active_names:
                revoked = datetime.now(UTC)
                result.keys_revoked.append(k["name"])
            elif revoked is None:
                active_names.add(k["name"])
            s.add(
                ApiKey(
                    name=k["name"],
                    prefix=k["prefix"],
                    key_hash=k["key_hash"],
                    scope=k["scope"],
                    created_at=_time(k["created_at"]),
                    revoked_at=revoked,
                )
            )
        if rec["audit"]:
            s.execute(AUDIT.insert(), [{**r, "time": _time(r["time"])} for r in rec["audit"]])
        s.flush()
    except (KeyError, TypeError, ValueError) as e:
        raise BackupError("archive_corrupt", f"archive records are malformed: {e!r}") from e
    except sa.exc.IntegrityError as e:
        raise BackupError("archive_corrupt", f"archive records are inconsistent: {e.orig}") from e
