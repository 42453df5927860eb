"""Double-entry journal with a hash chain, periods, payouts, top-ups and credit limits,
dataset-scoped keys; append-only ledger tables.

Existing hits are booked into the journal in their original order (one transaction each, with its
three postings), so a database from 0001 comes out verifiable. Then UPDATE and DELETE on ledger
tables are refused by triggers, on SQLite and PostgreSQL alike.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from ledger import chain

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = (
    "queries",
    "hits",
    "accounts",
    "journal",
    "postings",
    "periods",
    "payouts",
    "payout_events",
)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("owners") as batch:
        batch.add_column(sa.Column("stripe_account", sa.Text(), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("credit_limit_micros", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("dataset_scope", sa.Text(), nullable=True))
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.CheckConstraint(
            "kind IN ('customer', 'owner', 'platform', 'gateway')", name="ck_accounts_kind_known"
        ),
    )
    op.create_table(
        "payouts",
        sa.Column("payout_id", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("payout_id", name="pk_payouts"),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"], name="fk_payouts_owner_id_owners"),
        sa.UniqueConstraint(
            "owner_id", "period", "attempt", name="uq_payouts_owner_id_period_attempt"
        ),
        sa.CheckConstraint("amount_micros > 0", name="ck_payouts_amount_positive"),
    )
    op.create_table(
        "payout_events",
        sa.Column("payout_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("transfer_id", sa.Text(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("payout_id", "state", name="pk_payout_events"),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.payout_id"], name="fk_payout_events_payout_id_payouts"
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'submitted', 'paid', 'failed')",
            name="ck_payout_events_state_known",
        ),
    )
    op.create_table(
        "journal",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.Column("query_id", sa.Text(), nullable=True),
        sa.Column("reverses_seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payout_id", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.CHAR(64), nullable=False),
        sa.Column("hash", sa.CHAR(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_journal"),
        sa.ForeignKeyConstraint(
            ["reverses_seq"], ["journal.seq"], name="fk_journal_reverses_seq_journal"
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"], ["payouts.payout_id"], name="fk_journal_payout_id_payouts"
        ),
        sa.UniqueConstraint("reverses_seq", name="uq_journal_reverses_seq"),
        sa.UniqueConstraint("payout_id", name="uq_journal_payout_id"),
        sa.UniqueConstraint("reference", name="uq_journal_reference"),
        sa.CheckConstraint(
            "kind IN ('hit', 'reversal', 'payout', 'topup')", name="ck_journal_kind_known"
        ),
    )
    op.create_index("ix_journal_period_kind", "journal", ["period", "kind"])
    op.create_index("ix_journal_query_id", "journal", ["query_id"])
    op.create_table(
        "postings",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", "account_id", name="pk_postings"),
        sa.ForeignKeyConstraint(["seq"], ["journal.seq"], name="fk_postings_seq_journal"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_postings_account_id_accounts"
        ),
    )
    op.create_index("ix_postings_account_id_seq", "postings", ["account_id", "seq"])
    op.create_table(
        "periods",
        sa.Column("period", sa.Text(), nullable=False),
        _ts("closed_at"),
        sa.PrimaryKeyConstraint("period", name="pk_periods"),
    )

    with op.batch_alter_table("hits") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
    _book_existing_hits()
    with op.batch_alter_table("hits") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.create_unique_constraint("uq_hits_seq", ["seq"])
        batch.create_foreign_key("fk_hits_seq_journal", "journal", ["seq"], ["seq"])

    for table in APPEND_ONLY:
        _forbid_update_and_delete(table)


# The hit columns that existed at this revision (later ones are hashed only when set).
_HASHED_AT_0002 = [f for f in chain.HIT_HASHED_FIELDS if f not in chain.LATER_HIT_FIELDS]


def _book_existing_hits() -> None:
    """One journal transaction per existing hit, chained in hit-id order."""
    conn = op.get_bind()
    hits = sa.table(
        "hits",
        *(sa.column(name) for name in ("id", "seq", *_HASHED_AT_0002)),
    )
    rows = conn.execute(sa.select(hits).order_by(hits.c.id)).all()
    prev, accounts = chain.GENESIS_HASH, {}
    for seq, row in enumerate(rows, start=1):
        hit = {name: getattr(row, name) for name in _HASHED_AT_0002}
        created = hit["created_at"]
        if isinstance(created, str):  # SQLite hands back text from a plain table() select
            created = datetime.fromisoformat(created)
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        hit["created_at"] = created
        postings = chain.hit_postings(
            customer_id=row.customer_id,
            owner_id=row.owner_id,
            currency=row.currency,
            price=row.price_micros,
            owner=row.owner_micros,
            platform=row.platform_micros,
        )
        period = created.strftime("%Y-%m")
        digest = chain.entry_hash(
            prev,
            seq=seq,
            kind=chain.KIND_HIT,
            currency=row.currency,
            period=period,
            created_at=created,
            query_id=row.query_id,
            reverses_seq=None,
            reason=None,
            payout_id=None,
            postings=postings,
            hit=hit,
        )
        for account, _ in postings:
            if account not in accounts:
                accounts[account] = (chain.account_kind(account), row.currency, created)
                conn.execute(
                    sa.text(
                        "INSERT INTO accounts (id, kind, currency, created_at) "
                        "VALUES (:id, :kind, :currency, :at)"
                    ),
                    {
                        "id": account,
                        "kind": accounts[account][0],
                        "currency": row.currency,
                        "at": created,
                    },
                )
        conn.execute(
            sa.text(
                "INSERT INTO journal (seq, kind, currency, period, created_at, query_id, "
                "prev_hash, hash) VALUES (:seq, 'hit', :currency, :period, :at, :query_id, "
                ":prev, :hash)"
            ),
            {
                "seq": seq,
                "currency": row.currency,
                "period": period,
                "at": created,
                "query_id": row.query_id,
                "prev": prev,
                "hash": digest,
            },
        )
        conn.execute(
            sa.text("INSERT INTO postings (seq, account_id, amount_micros) VALUES (:seq, :a, :m)"),
            [{"seq": seq, "a": account, "m": amount} for account, amount in postings],
        )
        conn.execute(sa.update(hits).where(hits.c.id == row.id).values(seq=seq))
        prev = digest


def _forbid_update_and_delete(table: str) -> None:
    message = f"{table} is append-only: corrections are new, reversing rows"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION fairshare_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION '% is append-only: corrections are new, reversing rows', "
            "TG_TABLE_NAME USING ERRCODE = 'restrict_violation'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION fairshare_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION fairshare_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def downgrade() -> None:
    bind = op.get_bind()
    for table in APPEND_ONLY:
        if bind.dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fairshare_append_only()")
    with op.batch_alter_table("hits") as batch:
        batch.drop_constraint("fk_hits_seq_journal", type_="foreignkey")
        batch.drop_constraint("uq_hits_seq", type_="unique")
        batch.drop_column("seq")
    op.drop_table("periods")
    op.drop_index("ix_postings_account_id_seq", table_name="postings")
    op.drop_table("postings")
    op.drop_index("ix_journal_query_id", table_name="journal")
    op.drop_index("ix_journal_period_kind", table_name="journal")
    op.drop_table("journal")
    op.drop_table("payout_events")
    op.drop_table("payouts")
    op.drop_table("accounts")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("dataset_scope")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("credit_limit_micros")
    with op.batch_alter_table("owners") as batch:
        batch.drop_column("stripe_account")
