"""Every table of the service, declared once on one `Base`: what the migrations (service/storage/migrations/) build
and what the code reads and writes.

Collections (`collections`: one dealer's portfolios, keys and decision log each; revision 0003), portfolios
(`artists`, keyed by collection and id; `works`, `embeddings` by model id, the `gallery_state` version row), API
keys (`api_keys`: a collection's admin and verify keys, and operator keys that belong to none), the decision log
(`audit`, each row its collection's), and the model-switch bookkeeping (`serving_model`, `replicas`). The
schema changes only through a new migration revision; tests/service/test_migrations.py checks that the migrated
database and these declarations agree on both backends.

The decision log's fields are declared once, as the dataclass `AuditRecord` (what one answer writes) and
`AuditEntry` (as stored: with its id and time); the `audit` table's columns are made from those fields, the API
returns `AuditEntry` itself and the backup reads and writes the same fields.
"""

from __future__ import annotations

import uuid
from dataclasses import Field, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, get_type_hints

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


# ---- collections ---------------------------------------------------------------------------------------------
DEFAULT_COLLECTION = "default"  # what a database from before collections becomes (revision 0003)


class CollectionRow(Base):
    """One dealer's share of the deployment: every artist, work, key (but operator keys) and audit row belongs to
    exactly one. `max_works` / `max_bytes`: its quota (None: unlimited). `version`: the `gallery_state` version of
    the last write to its portfolios, so a process's in-memory view of this collection knows when to reload; taken
    from the deployment-wide counter, it never repeats, even for a collection deleted and made again."""

    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    max_works: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ---- portfolios ----------------------------------------------------------------------------------------------
# A work's catalogue entry, each a bounded free text (its longest length here): what a registrar records of a
# painting beside its picture. The API, the store, the backup and the migration (0002) all read this one list.
CATALOGUE: dict[str, int] = {
    "title": 256,
    "date": 64,  # "1887", "c. 1660–1665": as catalogued, not a calendar date
    "medium": 256,
    "dimensions": 128,
    "inventory_number": 128,  # inventory or accession number
    "photo_credit": 256,
    "notes": 2000,
}


class ArtistRow(Base):
    """An artist of one collection: ids are the collection's own (two dealers may both have a `vermeer`)."""

    __tablename__ = "artists"

    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    works: Mapped[list[WorkRow]] = relationship(
        back_populates="artist", cascade="all, delete-orphan", passive_deletes=True
    )


class WorkRow(Base):
    __tablename__ = "works"
    __table_args__ = (
        UniqueConstraint("collection_id", "artist_id", "sha256", name="uq_works_collection_artist_sha256"),
        ForeignKeyConstraint(
            ["collection_id", "artist_id"],
            ["artists.collection_id", "artists.id"],
            name="fk_works_artist",
            ondelete="CASCADE",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    collection_id: Mapped[str] = mapped_column(String(64))
    artist_id: Mapped[str] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    path: Mapped[str] = mapped_column(String(512))  # relative to the data dir
    size_bytes: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    title: Mapped[str | None] = mapped_column(String(CATALOGUE["title"]), nullable=True)
    date: Mapped[str | None] = mapped_column(String(CATALOGUE["date"]), nullable=True)
    medium: Mapped[str | None] = mapped_column(String(CATALOGUE["medium"]), nullable=True)
    dimensions: Mapped[str | None] = mapped_column(String(CATALOGUE["dimensions"]), nullable=True)
    inventory_number: Mapped[str | None] = mapped_column(String(CATALOGUE["inventory_number"]), nullable=True)
    photo_credit: Mapped[str | None] = mapped_column(String(CATALOGUE["photo_credit"]), nullable=True)
    notes: Mapped[str | None] = mapped_column(String(CATALOGUE["notes"]), nullable=True)
    artist: Mapped[ArtistRow] = relationship(back_populates="works")
    embeddings: Mapped[list[EmbeddingRow]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class EmbeddingRow(Base):
    """A work's backbone embedding under one model; several models may coexist, only the current one is used."""

    __tablename__ = "embeddings"

    work_id: Mapped[str] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian, `dim` values
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GalleryStateRow(Base):
    """One row (id 1): a counter that every transaction changing works or embeddings increments. Each process
    keeps its faiss index in memory; comparing the counter with the one its index was built at tells it that
    another process sharing the database (a replica, the CLI) changed the portfolios. The increment's row lock
    also serialises writers across processes."""

    __tablename__ = "gallery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


# ---- API keys ------------------------------------------------------------------------------------------------
class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The collection the key acts in (admin or verify scope); None for an operator key, which manages collections
    # and sees inside none.
    collection_id: Mapped[str | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # Unique among a collection's active keys only (enforced in code), so a revoked name can be reissued.
    name: Mapped[str] = mapped_column(String(64), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# ---- model switch ------------------------------------------------------------------------------------------
class ServingModelRow(Base):
    """One row (id 1): the model every replica serves, and the one being staged by an upgrade in progress."""

    __tablename__ = "serving_model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model_id: Mapped[str] = mapped_column(String(128))
    model_dir: Mapped[str] = mapped_column(String(1024))
    staged_model_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    staged_model_dir: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    switched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReplicaRow(Base):
    """A serving process's heartbeat: what it serves and which staged model it has ready."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(128))
    staged_ready: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# ---- the decision log ----------------------------------------------------------------------------------------
def _column(sql_type: Any, *, index: bool = False, primary_key: bool = False, default: Any = ...) -> Any:
    """A dataclass field that also says how the `audit` table stores it (nullable: its type admits None)."""
    meta = {"sql_type": sql_type, "index": index, "primary_key": primary_key}
    return field(metadata=meta) if default is ... else field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One compare / verify / identify answer as the decision log records it: which key asked which route about
    which upload(s) (sha256; only compare has a second), what was decided at what threshold, by which model, the
    verdict, and the artist and work it named (with their names and titles at the time)."""

    key_name: str = _column(String(64), index=True)
    route: str = _column(String(64), index=True)
    artist_id: str | None = _column(String(128), default=None)
    image_sha256: str = _column(String(64))
    image_b_sha256: str | None = _column(String(64), default=None)
    score: float | None = _column(sa.Float, default=None)
    threshold: float | None = _column(sa.Float, default=None)
    decision: str = _column(String(32))
    model_id: str = _column(String(128))
    request_id: str | None = _column(String(64), default=None)
    # revision 0002: the three-way verdict, and what the answer named, as it was named then
    verdict: str | None = _column(String(32), default=None)
    artist_name: str | None = _column(String(256), default=None)
    work_id: str | None = _column(String(36), default=None)  # verify: the reference that weighed most
    work_title: str | None = _column(String(256), default=None)
    same_work_as: str | None = _column(String(36), default=None)  # the enrolled work the upload is a copy of
    # revision 0003: the collection whose key asked; only that collection's keys ever read the row
    collection_id: str = _column(String(64), index=True)


@dataclass(frozen=True, kw_only=True)
class AuditEntry(AuditRecord):
    """A record as stored: its row id and the time it was written (UTC)."""

    id: int = _column(Integer, primary_key=True)
    time: datetime = _column(DateTime(timezone=True), index=True)


def audit_fields() -> list[Field[Any]]:
    """The entry's fields in the table's column order: id, time, then the record's."""
    own = {f.name for f in fields(AuditRecord)}
    entry = list(fields(AuditEntry))
    return [f for f in entry if f.name not in own] + [f for f in entry if f.name in own]


def _audit_columns() -> list[sa.Column[Any]]:
    hints = get_type_hints(AuditEntry)
    return [
        sa.Column(
            f.name,
            f.metadata["sql_type"],
            primary_key=f.metadata["primary_key"],
            autoincrement=True if f.metadata["primary_key"] else "auto",
            nullable=type(None) in getattr(hints[f.name], "__args__", ()),
            index=f.metadata["index"] or None,
        )
        for f in audit_fields()
    ]


AUDIT = sa.Table("audit", Base.metadata, *_audit_columns())
