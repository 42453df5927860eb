"""Revocation: `datasets.revoked_at`, the append-only `revocations` table of signed deletion
receipts, and the one change the ledger allows to a stored response.

`queries` stays append-only for every column but `response`, and `response` may change only for
a query with a hit on a revoked dataset: a revocation scrubs that dataset's passage text from the
stored bytes an Idempotency-Key replays (the journal's hash chain covers hit rows, not response
bytes, so `fairshare ledger verify` is unaffected). A later migration that adds a column to
`queries` must add it to `_QUERY_COLUMNS` below, or the column could be updated.

And no hit on a revoked dataset can be recorded. A search that read the dataset's passages just
before the revocation began would otherwise commit its response, text included, after the scrub
ran; now it either committed before the revocation marked the dataset (and its response is
scrubbed) or it fails, charging and delivering nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column of `queries` but `response`.
_QUERY_COLUMNS = (
    "query_id",
    "customer_id",
    "idempotency_key",
    "request_hash",
    "cost_micros",
    "currency",
    "created_at",
)
_APPEND_ONLY = "queries is append-only: corrections are new, reversing rows"
# As an SQL string literal's content (its quote doubled).
_SCRUB_ONLY = (
    "queries is append-only: a stored response changes only to scrub a revoked dataset''s text"
)
_NO_REVOKED_HITS = "dataset revoked: no hit on it can be recorded"
_REVOKED_DATASET = (
    "EXISTS (SELECT 1 FROM datasets WHERE datasets.id = NEW.dataset_id "
    "AND datasets.revoked_at IS NOT NULL)"
)
# Does the query being updated (OLD) have a hit on a revoked dataset?
_HAS_REVOKED_HIT = (
    "EXISTS (SELECT 1 FROM hits JOIN datasets ON datasets.id = hits.dataset_id "
    "WHERE hits.query_id = OLD.query_id AND datasets.revoked_at IS NOT NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "revocations",
        sa.Column("revocation_id", sa.Text(), nullable=False),
        sa.Column("dataset_id", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_revocations_dataset_id_datasets"
        ),
        sa.PrimaryKeyConstraint("revocation_id", name="pk_revocations"),
    )
    op.create_index("ix_revocations_dataset_id", "revocations", ["dataset_id"])
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER revocations_no_{action.lower()} BEFORE {action} ON revocations "
            "BEGIN SELECT RAISE(ABORT, 'revocations is append-only'); END"
        )
    op.execute("DROP TRIGGER queries_no_update")
    op.execute(
        f"CREATE TRIGGER queries_no_update BEFORE UPDATE OF {', '.join(_QUERY_COLUMNS)} "
        f"ON queries BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
    )
    op.execute(
        f"CREATE TRIGGER queries_scrub_only BEFORE UPDATE OF response ON queries "
        f"WHEN NOT {_HAS_REVOKED_HIT} "
        f"BEGIN SELECT RAISE(ABORT, '{_SCRUB_ONLY}'); END"
    )
    op.execute(
        f"CREATE TRIGGER hits_not_revoked BEFORE INSERT ON hits WHEN {_REVOKED_DATASET} "
        f"BEGIN SELECT RAISE(ABORT, '{_NO_REVOKED_HITS}'); END"
    )


def _postgresql_triggers() -> None:
    # fairshare_append_only() was created by 0002.
    op.execute(
        "CREATE TRIGGER revocations_append_only BEFORE UPDATE OR DELETE ON revocations "
        "FOR EACH ROW EXECUTE FUNCTION fairshare_append_only()"
    )
    op.execute(
        "CREATE TRIGGER revocations_no_truncate BEFORE TRUNCATE ON revocations "
        "FOR EACH STATEMENT EXECUTE FUNCTION fairshare_append_only()"
    )
    op.execute("DROP TRIGGER queries_append_only ON queries")
    op.execute(
        f"CREATE TRIGGER queries_append_only BEFORE UPDATE OF {', '.join(_QUERY_COLUMNS)} "
        "OR DELETE ON queries FOR EACH ROW EXECUTE FUNCTION fairshare_append_only()"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION fairshare_scrub_only() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN IF NOT {_HAS_REVOKED_HIT} THEN "
        f"RAISE EXCEPTION '{_SCRUB_ONLY}' "
        "USING ERRCODE = 'restrict_violation'; END IF; RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER queries_scrub_only BEFORE UPDATE OF response ON queries "
        "FOR EACH ROW EXECUTE FUNCTION fairshare_scrub_only()"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION fairshare_no_revoked_hits() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN IF {_REVOKED_DATASET} THEN "
        f"RAISE EXCEPTION '{_NO_REVOKED_HITS}' USING ERRCODE = 'restrict_violation'; "
        "END IF; RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER hits_not_revoked BEFORE INSERT ON hits "
        "FOR EACH ROW EXECUTE FUNCTION fairshare_no_revoked_hits()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS hits_not_revoked ON hits")
        op.execute("DROP FUNCTION IF EXISTS fairshare_no_revoked_hits()")
        op.execute("DROP TRIGGER IF EXISTS queries_scrub_only ON queries")
        op.execute("DROP FUNCTION IF EXISTS fairshare_scrub_only()")
        op.execute("DROP TRIGGER IF EXISTS queries_append_only ON queries")
        op.execute(
            "CREATE TRIGGER queries_append_only BEFORE UPDATE OR DELETE ON queries "
            "FOR EACH ROW EXECUTE FUNCTION fairshare_append_only()"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS hits_not_revoked")
        op.execute("DROP TRIGGER IF EXISTS queries_scrub_only")
        op.execute("DROP TRIGGER IF EXISTS queries_no_update")
        op.execute(
            "CREATE TRIGGER queries_no_update BEFORE UPDATE ON queries "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )
    op.drop_index("ix_revocations_dataset_id", table_name="revocations")
    op.drop_table("revocations")  # its triggers go with it
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("revoked_at")
