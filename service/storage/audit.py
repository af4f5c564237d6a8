"""The decision log: one row per compare / verify / identify answer, in the `audit` table.

Dealers need to show later which model said what about which image at which strictness. Rows name the key by its
name, never the key. Covered by tests/service/test_api_audit.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from service.storage.db import Base, init_db

if TYPE_CHECKING:  # the engine imports the store; the audit log only needs the type
    from service.serving.engine import Decision


class AuditRow(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    key_name: Mapped[str] = mapped_column(sa.String(64), index=True)
    route: Mapped[str] = mapped_column(sa.String(64), index=True)
    artist_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    image_sha256: Mapped[str] = mapped_column(sa.String(64))
    # Only /compare has a second image.
    image_b_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    score: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    decision: Mapped[str] = mapped_column(sa.String(32))
    model_id: Mapped[str] = mapped_column(sa.String(128))
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: datetime
    key_name: str
    route: str
    artist_id: str | None
    image_sha256: str
    image_b_sha256: str | None
    score: float | None
    threshold: float | None
    decision: str
    model_id: str
    request_id: str | None

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntry:
        t = row.time if row.time.tzinfo is not None else row.time.replace(tzinfo=UTC)
        return cls(
            row.id,
            t,
            row.key_name,
            row.route,
            row.artist_id,
            row.image_sha256,
            row.image_b_sha256,
            row.score,
            row.threshold,
            row.decision,
            row.model_id,
            row.request_id,
        )


class AuditLog:
    def __init__(self, bind: sa.Engine):
        self._sessions = sessionmaker(bind, expire_on_commit=False)
        init_db(bind, tables=[Base.metadata.tables[AuditRow.__tablename__]])

    def record(
        self,
        *,
        key_name: str,
        route: str,
        image_sha256: str,
        decision: str,
        model_id: str,
        score: float | None = None,
        threshold: float | None = None,
        artist_id: str | None = None,
        image_b_sha256: str | None = None,
        request_id: str | None = None,
    ) -> int:
        row = AuditRow(
            time=datetime.now(UTC),
            key_name=key_name,
            route=route,
            artist_id=artist_id,
            image_sha256=image_sha256,
            image_b_sha256=image_b_sha256,
            score=score,
            threshold=threshold,
            decision=decision,
            model_id=model_id,
            request_id=request_id,
        )
        with self._sessions.begin() as s:
            s.add(row)
            s.flush()
            return row.id

    def query(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        route: str | None = None,
        key_name: str | None = None,
        artist_id: str | None = None,
        since: datetime | None = None,
    ) -> tuple[list[AuditEntry], int]:
        """Newest first, with the total count under the same filters (for pagination)."""
        if any(v is not None and "\x00" in v for v in (route, key_name, artist_id)):
            # nothing stored holds NUL (PostgreSQL text cannot), and PostgreSQL would fail the query
            return [], 0
        conds = []
        if route is not None:
            conds.append(AuditRow.route == route)
        if key_name is not None:
            conds.append(AuditRow.key_name == key_name)
        if artist_id is not None:
            conds.append(AuditRow.artist_id == artist_id)
        if since is not None:
            # SQLite keeps no zone, so every stored and compared time is normalised to UTC.
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else _to_utc(since)
            conds.append(AuditRow.time >= since)
        with self._sessions() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(AuditRow).where(*conds)) or 0
            q = sa.select(AuditRow).where(*conds).order_by(AuditRow.id.desc()).offset(offset).limit(limit)
            return [AuditEntry.of(r) for r in s.scalars(q)], total


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def record_match(
    log: AuditLog,
    *,
    key_name: str,
    route: str,
    decision: Decision,
    request_id: str | None,
    artist_id: str | None = None,
) -> int:
    """A compare/verify decision as one audit row."""
    return await record_decision(
        log,
        key_name=key_name,
        route=route,
        images=decision.images,
        artist_id=artist_id,
        decision="match" if decision.match else "no_match",
        model_id=decision.model,
        score=decision.score,
        threshold=decision.threshold,
        request_id=request_id,
    )


async def record_decision(
    log: AuditLog,
    *,
    key_name: str,
    route: str,
    images: Sequence[str],
    decision: str,
    model_id: str,
    score: float | None = None,
    threshold: float | None = None,
    artist_id: str | None = None,
    request_id: str | None = None,
) -> int:
    """Write one row off the event loop (`images`: sha256 of the scored uploads). A failed write fails the
    request: an answer that is not in the decision log must not leave the service."""

    def write() -> int:
        return log.record(
            key_name=key_name,
            route=route,
            image_sha256=images[0],
            image_b_sha256=images[1] if len(images) > 1 else None,
            decision=decision,
            model_id=model_id,
            score=score,
            threshold=threshold,
            artist_id=artist_id,
            request_id=request_id,
        )

    return await anyio.to_thread.run_sync(write)


def _to_utc(t: datetime) -> datetime:
    """`t` in UTC; a time so near year 1 or 9999 that the shift leaves datetime's range clamps to that end
    (as a lower bound it then still means "everything" / "nothing")."""
    try:
        return t.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if t.year < 2 else datetime.max.replace(tzinfo=UTC)
