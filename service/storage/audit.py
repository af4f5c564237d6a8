"""The decision log: one row per compare / verify / identify answer, in the `audit` table.

Dealers need to show later which model said what about which image at which strictness. Rows name the key by its
name, never the key, and belong to the key's collection: `query` reads one collection's rows only. The fields are
declared once (service/storage/schema.py `AuditRecord`, `AuditEntry`): the table is made from them, the routes build
an `AuditRecord`, `/v1/audit` answers `AuditEntry`s and the backup archives their fields. Covered by
tests/service/test_api_audit.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, datetime

import anyio
import sqlalchemy as sa

from service.storage.schema import AUDIT, AuditEntry, AuditRecord

__all__ = ["AuditEntry", "AuditLog", "AuditRecord", "record", "sha256_hex"]


class AuditLog:
    def __init__(self, bind: sa.Engine):
        self._db = bind

    def record(self, entry: AuditRecord, time: datetime | None = None) -> int:
        with self._db.begin() as conn:
            values = {**asdict(entry), "time": time or datetime.now(UTC)}
            key = conn.execute(AUDIT.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def query(
        self,
        collection: str,
        *,
        offset: int = 0,
        limit: int = 50,
        route: str | None = None,
        key_name: str | None = None,
        artist_id: str | None = None,
        since: datetime | None = None,
    ) -> tuple[list[AuditEntry], int]:
        """`collection`'s rows, newest first, with the total count under the same filters (for pagination)."""
        if any(v is not None and "\x00" in v for v in (route, key_name, artist_id)):
            # nothing stored holds NUL (PostgreSQL text cannot), and PostgreSQL would fail the query
            return [], 0
        c = AUDIT.c
        filters = ((c.route, route), (c.key_name, key_name), (c.artist_id, artist_id))
        conds = [c.collection_id == collection] + [col == v for col, v in filters if v is not None]
        if since is not None:
            # SQLite keeps no zone, so every stored and compared time is normalised to UTC.
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else _to_utc(since)
            conds.append(c.time >= since)
        with self._db.connect() as conn:
            total = conn.scalar(sa.select(sa.func.count()).select_from(AUDIT).where(*conds)) or 0
            q = sa.select(AUDIT).where(*conds).order_by(c.id.desc()).offset(offset).limit(limit)
            return [entry(row._mapping) for row in conn.execute(q)], int(total)


def entry(values: object) -> AuditEntry:
    """A stored row (its mapping) as an `AuditEntry`, its time in UTC (SQLite hands back naive ones)."""
    row = dict(values)  # type: ignore[call-overload]
    t = row["time"]
    row["time"] = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return AuditEntry(**row)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def record(log: AuditLog, entry: AuditRecord) -> int:
    """Write one row off the event loop. A failed write fails the request: an answer that is not in the decision
    log must not leave the service."""
    return await anyio.to_thread.run_sync(log.record, entry)


def _to_utc(t: datetime) -> datetime:
    """`t` in UTC; a time so near year 1 or 9999 that the shift leaves datetime's range clamps to that end
    (as a lower bound it then still means "everything" / "nothing")."""
    try:
        return t.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if t.year < 2 else datetime.max.replace(tzinfo=UTC)
