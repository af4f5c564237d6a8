"""Collections: every artist, work, key and audit row belongs to one; a database from before becomes `default`.

- `collections` (id, name, quotas, version, created), with the row `default` (no quota; its version the
  deployment's `gallery_state` version, so the processes' in-memory views start in step);
- `artists` keyed by (collection_id, id): two collections may each have an artist `vermeer`;
- `works.collection_id`, its artist referenced by (collection_id, artist_id), a work's content unique per
  (collection, artist);
- `api_keys.collection_id` (NULL: an operator key, which belongs to no collection), `audit.collection_id`.

Every existing row goes to `default`. SQLite cannot change a primary key or a foreign key in place: `artists` and
`works` are rebuilt by Alembic's batch mode (copy, drop, rename) with foreign keys off for the migration
(service/storage/db.py `migrate` turns them off around it and checks them after), so dropping the old tables
cascades nowhere. PostgreSQL changes them in place, in the migrating transaction. The columns copied are whatever
the tables hold at this point (revision 0002's catalogue columns included). Written out here, not imported from
service/storage/schema.py: a revision states the schema at its point in history.

Revision ID: 0003
Revises: 0001
Create Date: 2026-04-15
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT = "default"
ID = sa.String(64)
# gives the unnamed constraints of revision 0001 names SQLite's batch mode can drop them by
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _add_collection_column(table: str, nullable: bool = False) -> None:
    """The column, existing rows in `default` (a server default; the second step takes it away again)."""
    with op.batch_alter_table(table) as batch:  # an ALTER TABLE … ADD COLUMN on both backends
        batch.add_column(
            sa.Column("collection_id", ID, nullable=nullable, server_default=None if nullable else DEFAULT)
        )


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # SQLite: constraints change only by copying the table
    rebuild: Literal["always", "never"] = "always" if sqlite else "never"
    op.create_table(
        "collections",
        sa.Column("id", ID, primary_key=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("max_works", sa.BigInteger(), nullable=True),
        sa.Column("max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    version = bind.scalar(sa.text("SELECT version FROM gallery_state WHERE id = 1")) or 0
    collections = sa.table(
        "collections",
        sa.column("id", ID),
        sa.column("name", sa.String),
        sa.column("version", sa.BigInteger),
        sa.column("created", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        collections, [{"id": DEFAULT, "name": "Default collection", "version": version, "created": datetime.now(UTC)}]
    )
    for table in ("artists", "works", "audit"):
        _add_collection_column(table)
    _add_collection_column("api_keys", nullable=True)
    op.execute(sa.text("UPDATE api_keys SET collection_id = :c").bindparams(c=DEFAULT))

    # artists: (collection_id, id) is the key
    if not sqlite:
        op.drop_constraint("works_artist_id_fkey", "works", type_="foreignkey")
        op.drop_constraint("artists_pkey", "artists", type_="primary")
    with warnings.catch_warnings():
        # SQLAlchemy notes that the copy's key differs from the reflected table's: that is the point of the copy
        warnings.filterwarnings("ignore", message=".*specifies columns 'id' as primary_key=True", category=SAWarning)
        with op.batch_alter_table("artists", recreate=rebuild) as batch:
            batch.alter_column("collection_id", existing_type=ID, existing_nullable=False, server_default=None)
            batch.create_primary_key("artists_pkey", ["collection_id", "id"])
            batch.create_foreign_key(
                "artists_collection_id_fkey", "collections", ["collection_id"], ["id"], ondelete="CASCADE"
            )

    # works: in a collection, their artist referenced by both columns
    with op.batch_alter_table("works", recreate=rebuild, naming_convention=NAMING) as batch:
        batch.alter_column("collection_id", existing_type=ID, existing_nullable=False, server_default=None)
        if sqlite:
            batch.drop_constraint("fk_works_artist_id_artists", type_="foreignkey")
        batch.drop_constraint("uq_works_artist_sha256", type_="unique")
        batch.create_unique_constraint("uq_works_collection_artist_sha256", ["collection_id", "artist_id", "sha256"])
        batch.create_foreign_key(
            "fk_works_artist", "artists", ["collection_id", "artist_id"], ["collection_id", "id"], ondelete="CASCADE"
        )

    # keys and the decision log
    with op.batch_alter_table("api_keys", recreate=rebuild) as batch:
        batch.create_foreign_key(
            "api_keys_collection_id_fkey", "collections", ["collection_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_api_keys_collection_id", ["collection_id"])
    with op.batch_alter_table("audit", recreate=rebuild) as batch:
        batch.alter_column("collection_id", existing_type=ID, existing_nullable=False, server_default=None)
        batch.create_index("ix_audit_collection_id", ["collection_id"])


def downgrade() -> None:
    raise NotImplementedError("collections cannot be folded back into one deployment: restore an export instead")
