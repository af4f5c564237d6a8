"""The schema as the releases before migrations made it with `create_all`.

Creates each table (and its indexes) only when it is absent: on an empty database it builds the whole schema; on a
database of a release before migrations (tests/service/previous_release/) it adopts what is there and adds only
the tables that release had not created yet (each was created on first use). Written out here, not imported from
service/storage/schema.py: a revision states the schema at its point in history, whatever the code declares later.

Revision ID: 0001
Revises:
Create Date: 2026-03-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def _create(name: str, *columns: Any, indexes: Sequence[tuple[str, bool]] = ()) -> None:
    """Table `name` with `indexes` [(column, unique)], named as create_all named them, unless it exists."""
    if sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *columns)
    for column, unique in indexes:
        op.create_index(f"ix_{name}_{column}", name, [column], unique=unique)


def upgrade() -> None:
    _create(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        indexes=[("key_hash", True), ("name", False)],
    )
    _create(
        "artists",
        sa.Column("id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created", TIME, nullable=False),
    )
    _create(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("key_name", sa.String(64), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("artist_id", sa.String(128), nullable=True),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_b_sha256", sa.String(64), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        indexes=[("key_name", False), ("route", False), ("time", False)],
    )
    _create(
        "gallery_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    _create(
        "replicas",
        sa.Column("id", sa.String(64), primary_key=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("staged_ready", sa.String(128), nullable=True),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.Column("seen", TIME, nullable=False),
    )
    _create(
        "serving_model",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False, nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("model_dir", sa.String(1024), nullable=False),
        sa.Column("staged_model_id", sa.String(128), nullable=True),
        sa.Column("staged_model_dir", sa.String(1024), nullable=True),
        sa.Column("switched_at", TIME, nullable=False),
    )
    _create(
        "works",
        sa.Column("id", sa.String(36), primary_key=True, nullable=False),
        sa.Column("artist_id", sa.String(64), sa.ForeignKey("artists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.UniqueConstraint("artist_id", "sha256", name="uq_works_artist_sha256"),
        indexes=[("artist_id", False), ("sha256", False)],
    )
    _create(
        "embeddings",
        sa.Column("work_id", sa.String(36), sa.ForeignKey("works.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.PrimaryKeyConstraint("work_id", "model_id"),
        indexes=[("model_id", False)],
    )


def downgrade() -> None:
    for name in ("embeddings", "works", "serving_model", "replicas", "gallery_state", "audit", "artists", "api_keys"):
        op.drop_table(name)
