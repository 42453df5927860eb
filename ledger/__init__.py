"""SQL catalog and ledger: SQLite embedded by default, PostgreSQL in production, one code path.

db                 engines, migrations, and `ledger_transaction` (the lock every append takes)
schema             the tables (SQLAlchemy Core); migrations/ creates exactly these
catalog            CatalogStore: owners, licences, datasets, documents, chunks; Passage
keys               KeyStore: hashed API keys; Principal
chain              account names, postings of each transaction kind, the hash chain
journal            append: book transactions (chained, balanced, one currency) in bulk
hits               HitLedger: idempotent, group-committed recording of queries and hits
reversals          reverse_query: corrections as reversing transactions with a reason code
periods            accounting months, closed in order
verify             recompute the chain and balances; report the first broken link
receipts           Ed25519-signed search receipts (JWS) and their public key
statements         build_statement: an owner's period, from the journal
statement_formats  CSV, HTML (with chart) and PDF renderings of a statement
gateway            the PayoutGateway protocol; stripe_gateway implements it with Stripe's SDK
payouts            Payouts: plan, submit, settle, retry and reconcile owner payouts
"""

from __future__ import annotations

from ledger.catalog import CatalogStore, Passage
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger
from ledger.keys import KeyStore, Principal
from ledger.statements import build_statement

__all__ = [
    "CatalogStore",
    "HitLedger",
    "KeyStore",
    "Passage",
    "Principal",
    "build_statement",
    "make_engine",
    "migrate",
    "sqlite_url",
]
