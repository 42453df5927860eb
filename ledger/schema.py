"""Tables of the catalog and the ledger (SQLAlchemy Core). migrations/ must create exactly these.

Money columns are BigInteger micros. Hits are denormalised on purpose and have no foreign key to
chunks: chunks are replaced on re-ingest, while a hit is history and must keep its meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

# Deterministic constraint names, so PostgreSQL and SQLite agree and migrations can name them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones: it stores naive UTC text (which also sorts correctly) and hands back
    naive values, so values are normalised to UTC on the way in and made aware on the way out.
    Naive datetimes are refused: guessing their zone would misplace hits across period boundaries.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _money(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False)


owners = Table(
    "owners",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Stripe Connect account (acct_...) that receives payouts; NULL: payouts wait until it is set.
    Column("stripe_account", Text, nullable=True),
)

licences = Table(
    "licences",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    _money("price_per_hit_micros"),
    Column("owner_share_bps", Integer, nullable=False),
    Column("snippet_cap_chars", Integer, nullable=False),
    Column("attribution", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Lists as JSON arrays (msgspec); `territories` NULL means everywhere not excluded.
    Column("permits", Text, nullable=False, server_default='["rag","display","summarize"]'),
    Column("prohibits", Text, nullable=False, server_default='["train"]'),
    Column("territories", Text, nullable=True),
    Column("excluded_territories", Text, nullable=False, server_default="[]"),
    Column("valid_from", UTCDateTime, nullable=True),
    Column("valid_until", UTCDateTime, nullable=True),
    # JSON array of region codes where the content may be stored, embedded and searched;
    # NULL: any region.
    Column("processing_regions", Text, nullable=True),
    CheckConstraint("price_per_hit_micros >= 0", name="price_nonnegative"),
    CheckConstraint("owner_share_bps BETWEEN 0 AND 10000", name="share_in_range"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner_id", Text, ForeignKey("owners.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("licence_id", Text, ForeignKey("licences.id"), nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Set once, when the dataset is revoked: its documents and chunks are deleted and it is
    # never served or ingested again. The row stays: hits and statements refer to it.
    Column("revoked_at", UTCDateTime, nullable=True),
)

documents = Table(
    "documents",
    metadata,
    Column("dataset_id", Text, ForeignKey("datasets.id"), nullable=False),
    Column("id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("url", Text, nullable=True),
    Column("published_at", Text, nullable=True),
    Column("language", Text, nullable=True),
    Column("metadata", Text, nullable=False),  # JSON object, encoded by msgspec
    Column("content_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("dataset_id", "id"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("dataset_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("char_start", Integer, nullable=False),
    Column("char_end", Integer, nullable=False),
    ForeignKeyConstraint(
        ["dataset_id", "document_id"],
        ["documents.dataset_id", "documents.id"],
        ondelete="CASCADE",
    ),
    Index(None, "dataset_id", "document_id"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # How far below zero the prepaid balance may go. NULL: no limit (invoiced customer);
    # 0: strictly prepaid. Searches that would go further get 402.
    Column("credit_limit_micros", BigInteger, nullable=True),
    # ISO 3166-1 alpha-2 of the customer's jurisdiction; NULL: unknown, so licences limited to
    # some territories are not served to it.
    Column("territory", CHAR(2), nullable=True),
    UniqueConstraint("name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("customer_id", Text, ForeignKey("customers.id"), nullable=False),
    Column("role", Text, nullable=False),
    Column("owner_id", Text, ForeignKey("owners.id"), nullable=True),
    Column("key_hash", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # Comma-separated dataset ids (slugs, so no commas) the key is limited to; NULL: all.
    Column("dataset_scope", Text, nullable=True),
    UniqueConstraint("key_hash"),
    CheckConstraint("role IN ('agent', 'owner', 'admin')", name="role_known"),
)

queries = Table(
    "queries",
    metadata,
    Column("query_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("idempotency_key", Text, nullable=True),
    Column("request_hash", Text, nullable=False),
    Column("response", LargeBinary, nullable=False),
    _money("cost_micros"),
    Column("currency", CHAR(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # NULL keys never collide (SQL semantics on both backends): requests without a key are free.
    UniqueConstraint("customer_id", "idempotency_key"),
    CheckConstraint("cost_micros >= 0", name="cost_nonnegative"),
)

hits = Table(
    "hits",
    metadata,
    # SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("query_id", Text, ForeignKey("queries.query_id"), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("chunk_id", Text, nullable=False),
    Column("document_id", Text, nullable=False),
    Column("dataset_id", Text, nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("licence_id", Text, nullable=False),
    _money("price_micros"),
    _money("owner_micros"),
    _money("platform_micros"),
    Column("currency", CHAR(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The hit's transaction in the journal, which carries the hash chain and the postings.
    Column("seq", BigInteger, ForeignKey("journal.seq"), nullable=False),
    # The region whose partition served the passage, and the customer's jurisdiction then
    # (NULL: recorded before either was kept, or a customer of unknown jurisdiction).
    Column("region", Text, nullable=True),
    Column("territory", CHAR(2), nullable=True),
    UniqueConstraint("query_id", "rank"),
    UniqueConstraint("seq"),
    CheckConstraint("owner_micros + platform_micros = price_micros", name="split_sums"),
    CheckConstraint(
        "price_micros >= 0 AND owner_micros >= 0 AND platform_micros >= 0", name="nonnegative"
    ),
    Index(None, "owner_id", "created_at"),  # statements
    Index(None, "customer_id", "chunk_id"),  # has the customer bought this chunk?
)


accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),  # see ledger.chain: customer:…, owner:…, platform:…
    Column("kind", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('customer', 'owner', 'platform', 'gateway')", name="kind_known"),
)

# One row per money transaction, in the order they were committed. `seq` is assigned by the
# writer under the ledger lock (ledger.journal), so it is gapless and the chain has one order.
journal = Table(
    "journal",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("period", Text, nullable=False),  # the accounting period it is booked in, YYYY-MM
    Column("created_at", UTCDateTime, nullable=False),
    Column("query_id", Text, nullable=True),
    Column("reverses_seq", BigInteger, ForeignKey("journal.seq"), nullable=True),
    Column("reason", Text, nullable=True),
    Column("payout_id", Text, ForeignKey("payouts.payout_id"), nullable=True),
    Column("reference", Text, nullable=True),  # a top-up's external id (its idempotency key)
    Column("prev_hash", CHAR(64), nullable=False),
    Column("hash", CHAR(64), nullable=False),
    # A transaction is reversed at most once, and a payout is booked at most once.
    UniqueConstraint("reverses_seq"),
    UniqueConstraint("payout_id"),
    UniqueConstraint("reference"),
    CheckConstraint("kind IN ('hit', 'reversal', 'payout', 'topup')", name="kind_known"),
    Index(None, "period", "kind"),
    Index(None, "query_id"),
)

postings = Table(
    "postings",
    metadata,
    Column("seq", BigInteger, ForeignKey("journal.seq"), nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("amount_micros", BigInteger, nullable=False),  # debit > 0, credit < 0
    PrimaryKeyConstraint("seq", "account_id"),
    Index(None, "account_id", "seq"),
)

periods = Table(
    "periods",
    metadata,
    Column("period", Text, primary_key=True),  # closed periods only; absent means open
    Column("closed_at", UTCDateTime, nullable=False),
)

payouts = Table(
    "payouts",
    metadata,
    Column("payout_id", Text, primary_key=True),  # also the gateway's idempotency key
    Column("owner_id", Text, ForeignKey("owners.id"), nullable=False),
    Column("period", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    _money("amount_micros"),
    Column("destination", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner_id", "period", "attempt"),
    CheckConstraint("amount_micros > 0", name="amount_positive"),
)

# A payout's state is its newest event: pending -> submitted -> paid | failed. Each state is
# entered at most once per payout, so a transition can never be recorded twice.
payout_events = Table(
    "payout_events",
    metadata,
    Column("payout_id", Text, ForeignKey("payouts.payout_id"), nullable=False),
    Column("state", Text, nullable=False),
    Column("transfer_id", Text, nullable=True),
    Column("failure", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("payout_id", "state"),
    CheckConstraint("state IN ('pending', 'submitted', 'paid', 'failed')", name="state_known"),
)

# Signed deletion receipts (`contracts.RevocationClaims`), kept so they can be fetched again. One
# receipt may cover several regions; each region's database keeps a copy of those covering it.
revocations = Table(
    "revocations",
    metadata,
    Column("revocation_id", Text, primary_key=True),
    Column("dataset_id", Text, ForeignKey("datasets.id"), nullable=False),
    Column("owner_id", Text, nullable=False),
    Column("receipt", Text, nullable=False),  # the JWS, claims included
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "dataset_id"),
)

# Tables the application only ever INSERTs into; the database refuses UPDATE and DELETE on them
# (triggers created by migrations 0002 and 0005). One exception, enforced by a trigger too: a
# revocation scrubs the revoked dataset's passage text from `queries.response` (see
# `ledger.revocations.scrub_responses`); no other column of `queries` can change.
APPEND_ONLY_TABLES = (
    "queries",
    "hits",
    "accounts",
    "journal",
    "postings",
    "periods",
    "payouts",
    "payout_events",
    "revocations",
)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime: the only kind the tables accept."""
    return datetime.now(UTC)
