"""Alembic's environment for the service's schema (service/storage/schema.py).

Run through `service.storage.db.migrate`, which hands over a connection already inside the transaction that holds
the migration lock. Standing alone (`alembic -x url=sqlite:///data/brushprint.db …` with a config naming this
folder), it connects to the URL given."""

from __future__ import annotations

from alembic import context

from service.storage.db import make_engine
from service.storage.schema import Base

config = context.config


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters a table by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=<SQLAlchemy URL> …")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()
