"""SQLAlchemy 2 plumbing and the portfolio tables: one declarative `Base` for every table of the service.

SQLite (a file in the data dir) by default, PostgreSQL by URL. For SQLite every connection turns on WAL (readers
never block the writer), foreign keys (so deleting an artist cascades) and a busy timeout. Other modules
(api keys, audit) declare their tables on the same `Base`; `init_db(engine)` creates whatever is declared.
Covered by tests/service/test_store.py, and on PostgreSQL by tests/service/test_postgres.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


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


class ArtistRow(Base):
    __tablename__ = "artists"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    works: Mapped[list[WorkRow]] = relationship(
        back_populates="artist", cascade="all, delete-orphan", passive_deletes=True
    )


class WorkRow(Base):
    __tablename__ = "works"
    __table_args__ = (UniqueConstraint("artist_id", "sha256", name="uq_works_artist_sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    path: Mapped[str] = mapped_column(String(512))  # relative to the data dir
    size_bytes: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
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


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
                # with WAL, NORMAL loses no committed transaction on an application crash, only on power loss
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


# pg_advisory_xact_lock key for schema creation: any constant shared by every replica ("brushprint" in ASCII)
_SCHEMA_LOCK = 0x6272757368


def init_db(engine: Engine, tables: list[Table] | None = None) -> None:
    """Create every table declared on `Base` so far, or just `tables` (idempotent).

    On PostgreSQL, replicas starting together would race their CREATE TABLEs (one fails on a duplicate pg_type
    row), so creation is serialised with an advisory lock held until the DDL commits; the later ones then find
    the tables there.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        Base.metadata.create_all(conn, tables=tables)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
