"""Residency: where a licence's content may be processed, and where each hit was.

`licences.processing_regions` NULL means any region, which is what every licence written before
regions existed allowed. `hits.region` and `hits.territory` NULL mean the hit was recorded before
they were (the region that processed it and the customer's jurisdiction were not kept then).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("licences") as batch:
        batch.add_column(sa.Column("processing_regions", sa.Text(), nullable=True))
    with op.batch_alter_table("hits") as batch:
        batch.add_column(sa.Column("region", sa.Text(), nullable=True))
        batch.add_column(sa.Column("territory", sa.CHAR(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hits") as batch:
        batch.drop_column("territory")
        batch.drop_column("region")
    with op.batch_alter_table("licences") as batch:
        batch.drop_column("processing_regions")
