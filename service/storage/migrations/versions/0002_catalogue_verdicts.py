"""Catalogue entries on works (title, date, medium, dimensions, inventory number, photo credit, notes) and, in the
decision log, the three-way verdict and the artist and work an answer named (with their names then).

All new columns are nullable: existing rows keep what they had and read as "not recorded". Written out here, not
imported from service/storage/schema.py: a revision states the schema at its point in history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-04-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WORKS = (
    ("title", 256),
    ("date", 64),
    ("medium", 256),
    ("dimensions", 128),
    ("inventory_number", 128),
    ("photo_credit", 256),
    ("notes", 2000),
)
AUDIT = (("verdict", 32), ("artist_name", 256), ("work_id", 36), ("work_title", 256), ("same_work_as", 36))


def upgrade() -> None:
    for table, columns in (("works", WORKS), ("audit", AUDIT)):
        with op.batch_alter_table(table) as batch:
            for name, length in columns:
                batch.add_column(sa.Column(name, sa.String(length), nullable=True))


def downgrade() -> None:
    for table, columns in (("works", WORKS), ("audit", AUDIT)):
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(columns):
                batch.drop_column(name)
