"""Machine-readable licence terms (uses, territories, validity window) and customer territory.

Existing licences get the defaults a licence without these terms always had in effect: serving
uses (rag, display, summarize) permitted, training not, everywhere, without end.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("licences") as batch:
        batch.add_column(
            sa.Column(
                "permits",
                sa.Text(),
                nullable=False,
                server_default='["rag","display","summarize"]',
            )
        )
        batch.add_column(
            sa.Column("prohibits", sa.Text(), nullable=False, server_default='["train"]')
        )
        batch.add_column(sa.Column("territories", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("excluded_territories", sa.Text(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("territory", sa.CHAR(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("territory")
    with op.batch_alter_table("licences") as batch:
        for column in (
            "valid_until",
            "valid_from",
            "excluded_territories",
            "territories",
            "prohibits",
            "permits",
        ):
            batch.drop_column(column)
