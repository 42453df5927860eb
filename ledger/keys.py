"""API keys: created once in plaintext, stored only as a SHA-256 hash.

A key is "fs_" + 32 random bytes (urlsafe base64). With 256 bits of entropy an unsalted fast hash
is enough (nobody can brute-force it, unlike a password) and it lets us look keys up by hash.

Customers are found or created by name. A new customer's id is "cus_" + random hex, not a slug of
the name: names are free text and two of them may slug to the same string.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import Literal, get_args

import msgspec
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import AuthError, ConflictError, InvalidInput, NotFound
from contracts.money import check_currency
from ledger.db import read, write_transaction
from ledger.schema import api_keys, customers, owners, utcnow
from ledger.schema import datasets as dataset_rows

Role = Literal["agent", "owner", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
KEY_PREFIX = "fs_"
KEY_BYTES = 32
# What we keep of a key in clear to let people tell their keys apart: "fs_" + 8 characters.
SHOWN_PREFIX_CHARS = len(KEY_PREFIX) + 8
_KEY_LENGTH = len(KEY_PREFIX) + len(secrets.token_urlsafe(KEY_BYTES))
_KEY_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: the key, its customer, and what the key may do."""

    key_id: str
    customer_id: str
    customer_name: str
    role: Role
    owner_id: str | None
    currency: str
    # The only datasets this key may search and be charged for; None: every dataset.
    datasets: frozenset[str] | None = None
    # The customer's jurisdiction (ISO 3166-1 alpha-2); None: unknown.
    territory: str | None = None


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _well_formed(api_key: str) -> bool:
    return (
        len(api_key) == _KEY_LENGTH
        and api_key.startswith(KEY_PREFIX)
        and _KEY_ALPHABET.issuperset(api_key[len(KEY_PREFIX) :])
    )


# Every authenticated request runs this: built once, since building a SQLAlchemy expression
# costs more Python than compiling it (which SQLAlchemy caches) or running it.
_LIVE_KEY = (
    select(
        api_keys.c.id,
        api_keys.c.customer_id,
        customers.c.name,
        api_keys.c.role,
        api_keys.c.owner_id,
        customers.c.currency,
        api_keys.c.dataset_scope,
        customers.c.territory,
    )
    .join_from(api_keys, customers, api_keys.c.customer_id == customers.c.id)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create_key(
        self,
        *,
        customer: str,
        role: str,
        owner_id: str | None = None,
        currency: str = "USD",
        datasets: Sequence[str] | None = None,
    ) -> tuple[Principal, str]:
        """Create a key for `customer` (created if new) and return it with its only plaintext.

        Owner keys must name an existing owner; other roles must not name one. A customer's
        currency is fixed when it is created: asking for another one later is a ConflictError.
        `datasets` scopes the key: it can then search only those (existing) datasets.
        """
        scope = None if datasets is None else frozenset(datasets)
        if scope is not None and not scope:
            raise InvalidInput("a dataset scope must name at least one dataset")
        customer = customer.strip()
        if not customer or len(customer) > 200:
            raise InvalidInput("customer name must be 1 to 200 characters")
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
        if role == "owner" and owner_id is None:
            raise InvalidInput("an owner key must name the owner it acts for (owner_id)")
        if role != "owner" and owner_id is not None:
            raise InvalidInput(f"a {role} key cannot be bound to an owner")
        check_currency(currency)
        api_key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        key_id = "key_" + uuid.uuid4().hex
        try:
            async with write_transaction(self._engine) as conn:
                if owner_id is not None:
                    found = await conn.execute(select(owners.c.id).where(owners.c.id == owner_id))
                    if found.first() is None:
                        raise NotFound(f"owner {owner_id} does not exist", owner_id=owner_id)
                if scope is not None:
                    known = await conn.execute(
                        select(dataset_rows.c.id).where(dataset_rows.c.id.in_(sorted(scope)))
                    )
                    if unknown := scope - set(known.scalars()):
                        raise NotFound(
                            f"unknown dataset(s) in scope: {', '.join(sorted(unknown))}",
                            datasets=sorted(unknown),
                        )
                customer_id = await self._customer(conn, customer, currency)
                await conn.execute(
                    insert(api_keys),
                    {
                        "id": key_id,
                        "customer_id": customer_id,
                        "role": role,
                        "owner_id": owner_id,
                        "key_hash": hash_key(api_key),
                        "prefix": api_key[:SHOWN_PREFIX_CHARS],
                        "dataset_scope": None if scope is None else ",".join(sorted(scope)),
                        "created_at": utcnow(),
                    },
                )
        except IntegrityError as exc:
            # Only a concurrent creation of the same customer gets here (PostgreSQL): ask again.
            raise ConflictError(f"customer {customer!r} was created concurrently; retry") from exc
        principal = Principal(
            key_id=key_id,
            customer_id=customer_id,
            customer_name=customer,
            role=role,  # type: ignore[arg-type]  # checked against ROLES above
            owner_id=owner_id,
            currency=currency,
            datasets=scope,
        )
        return principal, api_key

    @staticmethod
    async def _customer(conn: AsyncConnection, name: str, currency: str) -> str:
        row = (
            await conn.execute(
                select(customers.c.id, customers.c.currency).where(customers.c.name == name)
            )
        ).first()
        if row is None:
            customer_id = "cus_" + uuid.uuid4().hex
            await conn.execute(
                insert(customers),
                {"id": customer_id, "name": name, "currency": currency, "created_at": utcnow()},
            )
            return customer_id
        if row.currency != currency:
            raise ConflictError(
                f"customer {name!r} is billed in {row.currency}, not {currency}",
                customer_id=row.id,
            )
        return str(row.id)

    async def authenticate(self, api_key: str) -> Principal:
        """The Principal of a live key; AuthError for malformed, unknown or revoked keys."""
        if not _well_formed(api_key):
            raise AuthError("invalid API key")
        params = {"key_hash": hash_key(api_key)}
        row = await read(self._engine, lambda conn: conn.execute(_LIVE_KEY, params).first())
        if row is None:
            raise AuthError("invalid API key")
        return Principal(
            key_id=row.id,
            customer_id=row.customer_id,
            customer_name=row.name,
            role=row.role,
            owner_id=row.owner_id,
            currency=row.currency,
            datasets=None if row.dataset_scope is None else frozenset(row.dataset_scope.split(",")),
            territory=row.territory,
        )

    async def revoke(self, key_id: str) -> None:
        """Revoke a key at once; revoking a revoked key is a no-op, an unknown one NotFound."""
        async with write_transaction(self._engine) as conn:
            found = await conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id))
            if found.first() is None:
                raise NotFound(f"API key {key_id} does not exist", key_id=key_id)
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
