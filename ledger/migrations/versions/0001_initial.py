"""Initial catalog and ledger tables.

Written by hand to match ledger/schema.py; tests/ledger/test_migrations.py compares the two.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    # Plain DateTime, not ledger.schema.UTCDateTime: a migration must not change when app code does.
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _money(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_owners"),
    )
    op.create_table(
        "licences",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _money("price_per_hit_micros"),
        sa.Column("owner_share_bps", sa.Integer(), nullable=False),
        sa.Column("snippet_cap_chars", sa.Integer(), nullable=False),
        sa.Column("attribution", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_licences"),
        sa.CheckConstraint("price_per_hit_micros >= 0", name="ck_licences_price_nonnegative"),
        sa.CheckConstraint(
            "owner_share_bps BETWEEN 0 AND 10000", name="ck_licences_share_in_range"
        ),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("licence_id", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="0"),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_datasets_owner_id_owners"),
        sa.ForeignKeyConstraint(
            ["licence_id"], ["licences.id"], name="fk_datasets_licence_id_licences"
        ),
    )
    op.create_table(
        "documents",
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("published_at", sa.Text(), nullable=True),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("dataset_id", "id", name="pk_documents"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_documents_dataset_id_datasets"
        ),
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("document_id", sa.Text(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chunks"),
        sa.ForeignKeyConstraint(
            ["dataset_id", "document_id"],
            ["documents.dataset_id", "documents.id"],
            name="fk_chunks_dataset_id_document_id_documents",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_chunks_dataset_id_document_id", "chunks", ["dataset_id", "document_id"])
    op.create_table(
        "customers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("name", name="uq_customers_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=True),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        sa.CheckConstraint("role IN ('agent', 'owner', 'admin')", name="ck_api_keys_role_known"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_api_keys_customer_id_customers"
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_api_keys_owner_id_owners"),
    )
    op.create_table(
        "queries",
        sa.Column("query_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        _money("cost_micros"),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("query_id", name="pk_queries"),
        sa.UniqueConstraint(
            "customer_id", "idempotency_key", name="uq_queries_customer_id_idempotency_key"
        ),
        sa.CheckConstraint("cost_micros >= 0", name="ck_queries_cost_nonnegative"),
    )
    op.create_table(
        "hits",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("query_id", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("chunk_id", sa.Text(), nullable=False),
        sa.Column("document_id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("licence_id", sa.Text(), nullable=False),
        _money("price_micros"),
        _money("owner_micros"),
        _money("platform_micros"),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_hits"),
        sa.UniqueConstraint("query_id", "rank", name="uq_hits_query_id_rank"),
        sa.CheckConstraint(
            "owner_micros + platform_micros = price_micros", name="ck_hits_split_sums"
        ),
        sa.CheckConstraint(
            "price_micros >= 0 AND owner_micros >= 0 AND platform_micros >= 0",
            name="ck_hits_nonnegative",
        ),
        sa.ForeignKeyConstraint(
            ["query_id"], ["queries.query_id"], name="fk_hits_query_id_queries"
        ),
    )
    op.create_index("ix_hits_owner_id_created_at", "hits", ["owner_id", "created_at"])
    op.create_index("ix_hits_customer_id_chunk_id", "hits", ["customer_id", "chunk_id"])


def downgrade() -> None:
    op.drop_index("ix_hits_customer_id_chunk_id", table_name="hits")
    op.drop_index("ix_hits_owner_id_created_at", table_name="hits")
    op.drop_table("hits")
    op.drop_table("queries")
    op.drop_table("api_keys")
    op.drop_table("customers")
    op.drop_index("ix_chunks_dataset_id_document_id", table_name="chunks")
    op.drop_table("chunks")
    op.drop_table("documents")
    op.drop_table("datasets")
    op.drop_table("licences")
    op.drop_table("owners")
