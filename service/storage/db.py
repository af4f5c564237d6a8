"""The database: SQLAlchemy engines and sessions, and the schema brought to the current revision by Alembic.

SQLite (a file in the data dir) by default, PostgreSQL by URL. For SQLite every connection turns on WAL (readers
never block the writer), foreign keys (so deleting an artist cascades) and a busy timeout.

The tables are declared in service/storage/schema.py and created or changed only by the migrations in
service/storage/migrations/ (`migrate`). Every process opens its database with `open_database`, which migrates it
first, under a lock: on PostgreSQL an advisory lock held by the migrating transaction (DDL is transactional there,
so replicas starting together never race and a failed migration leaves nothing half-done), on SQLite an
exclusive lock on a file beside the database. The revision after the last one is current; a database from
before migrations (tables made by `create_all`) is adopted by the first revision, which creates only what is
missing. `python -m service db upgrade` runs the same step on its own (a deployment that sets
`BRUSHPRINT_MIGRATE_ON_START=false` runs it before starting the new release; the service then refuses a
database that is not current). Covered by tests/service/test_migrations.py and tests/service/test_store.py,
and on PostgreSQL by tests/service/test_postgres.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key for migrations: any constant shared by every replica ("brushprint" in ASCII)
_SCHEMA_LOCK = 0x6272757368


class SchemaError(RuntimeError):
    """The database is not at the schema revision this release needs (and was not to be migrated here)."""


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # a fresh data dir on first use
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


@contextmanager
def snapshot_session(db: Engine) -> Iterator[Session]:
    """A session whose reads all see one committed state of the database, however long it stays open and whatever
    other processes commit meanwhile (a backup's read). PostgreSQL: a REPEATABLE READ, READ ONLY transaction (a
    snapshot taken at its first statement). SQLite: an explicit BEGIN, so the first read fixes the WAL snapshot
    the rest see; pysqlite would otherwise run each SELECT in a transaction of its own. Writers are not blocked.
    Nothing is written through it: it is rolled back on exit. Covered by tests/service/test_backup.py."""
    with make_sessionmaker(db)() as s:
        if db.dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
        elif db.dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN")
        try:
            yield s
        finally:
            s.rollback()


# ---- migrations ------------------------------------------------------------------------------------------------
def _alembic_config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The revision this release's code is written for."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Engine) -> str | None:
    """The revision the database is at; None before any migration (empty, or made by a release before them)."""
    from alembic.runtime.migration import MigrationContext

    with db.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _file_lock(db: Engine) -> Iterator[None]:
    """An exclusive lock beside a SQLite file, so two processes never migrate it at once (none for :memory:)."""
    path = db.url.database
    if not path or path == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not on POSIX: one process migrates at a time by convention
        yield
        return
    with open(f"{path}.migrate-lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def migrate(db: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision` under the migration lock; returns (revision before, revision after)."""
    from alembic import command

    lock = _file_lock(db) if db.dialect.name == "sqlite" else contextlib.nullcontext()
    with lock, db.connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        from alembic.runtime.migration import MigrationContext

        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_alembic_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def open_database(url: str, migrate_schema: bool = True) -> Engine:
    """The engine every process uses: the schema migrated to the current revision first, or, without
    `migrate_schema`, checked to be at it (`SchemaError` names the command that brings it there)."""
    db = make_engine(url)
    try:
        if migrate_schema:
            migrate(db)
        else:
            have, want = current_revision(db), head_revision()
            if have != want:
                raise SchemaError(
                    f"the database is at schema revision {have or 'none'}, this release needs {want}: run "
                    "`python -m service db upgrade` (or start with BRUSHPRINT_MIGRATE_ON_START=true)"
                )
    except BaseException:
        db.dispose()
        raise
    return db
