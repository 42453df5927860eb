"""SQL catalog and ledger: SQLite embedded by default, PostgreSQL in production, one code path.

db          engines (make_engine, sqlite_url) and migrations (migrate)
schema      the tables (SQLAlchemy Core); migrations/ creates exactly these
catalog     CatalogStore: owners, licences, datasets, documents, chunks; Passage
keys        KeyStore: hashed API keys; Principal
hits        HitLedger: idempotent recording of queries and their hits
statements  build_statement, statement_csv, statement_html
"""

from __future__ import annotations

from ledger.catalog import CatalogStore, Passage
from ledger.db import make_engine, migrate, sqlite_url
from ledger.hits import HitLedger
from ledger.keys import KeyStore, Principal
from ledger.statements import build_statement, statement_csv, statement_html

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
    "statement_csv",
    "statement_html",
]
