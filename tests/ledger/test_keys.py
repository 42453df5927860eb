from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import AuthError, ConflictError, InvalidInput, NotFound
from ledger.catalog import CatalogStore
from ledger.keys import KeyStore, Principal
from ledger.schema import metadata
from tests.ledger.support import owner


async def test_created_key_authenticates_as_its_principal(keys: KeyStore) -> None:
    principal, api_key = await keys.create_key(customer="Agent Co", role="agent")
    assert api_key.startswith("fs_") and len(api_key) == 46
    assert principal.customer_id.startswith("cus_")
    assert principal == Principal(
        key_id=principal.key_id,
        customer_id=principal.customer_id,
        customer_name="Agent Co",
        role="agent",
        owner_id=None,
        currency="USD",
    )
    assert await keys.authenticate(api_key) == principal


async def test_second_key_for_same_customer_shares_the_customer(keys: KeyStore) -> None:
    first, k1 = await keys.create_key(customer="Agent Co", role="agent", currency="EUR")
    second, k2 = await keys.create_key(customer="Agent Co", role="admin", currency="EUR")
    assert k1 != k2 and first.key_id != second.key_id
    assert first.customer_id == second.customer_id
    assert (await keys.authenticate(k2)).role == "admin"
    with pytest.raises(ConflictError, match="billed in EUR"):
        await keys.create_key(customer="Agent Co", role="agent", currency="USD")


async def test_owner_keys_are_bound_to_an_existing_owner(
    keys: KeyStore, catalog: CatalogStore
) -> None:
    with pytest.raises(InvalidInput, match="owner_id"):
        await keys.create_key(customer="Acme", role="owner")
    with pytest.raises(NotFound, match="owner acme"):
        await keys.create_key(customer="Acme", role="owner", owner_id="acme")
    await catalog.add_owner(owner())
    principal, api_key = await keys.create_key(customer="Acme", role="owner", owner_id="acme")
    assert (await keys.authenticate(api_key)).owner_id == "acme" == principal.owner_id


@pytest.mark.parametrize(
    ("role", "owner_id", "message"),
    [("root", None, "unknown role"), ("agent", "acme", "cannot be bound"), ("admin", "x", "bound")],
)
async def test_bad_role_combinations_are_refused(
    keys: KeyStore, role: str, owner_id: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await keys.create_key(customer="C", role=role, owner_id=owner_id)


@pytest.mark.parametrize(
    "api_key",
    ["", "fs_", "sk_" + "A" * 43, "fs_" + "A" * 42, "fs_" + "A" * 44, "fs_" + "!" * 43, "Bearer x"],
)
async def test_malformed_or_unknown_keys_fail_auth(keys: KeyStore, api_key: str) -> None:
    await keys.create_key(customer="C", role="agent")
    with pytest.raises(AuthError, match="invalid API key"):
        await keys.authenticate(api_key)


async def test_unknown_well_formed_key_fails_auth(keys: KeyStore) -> None:
    _, api_key = await keys.create_key(customer="C", role="agent")
    other = api_key[:-1] + ("B" if api_key[-1] != "B" else "C")
    with pytest.raises(AuthError):
        await keys.authenticate(other)


async def test_revoked_key_stops_working_at_once(keys: KeyStore) -> None:
    principal, api_key = await keys.create_key(customer="C", role="agent")
    _, kept = await keys.create_key(customer="C", role="agent")
    await keys.revoke(principal.key_id)
    await keys.revoke(principal.key_id)  # idempotent
    with pytest.raises(AuthError):
        await keys.authenticate(api_key)
    assert (await keys.authenticate(kept)).customer_name == "C"
    with pytest.raises(NotFound):
        await keys.revoke("key_missing")


async def test_no_plaintext_key_is_stored(
    keys: KeyStore, engine: AsyncEngine, tmp_path: Path
) -> None:
    created = [await keys.create_key(customer=f"C{i}", role="agent") for i in range(3)]
    secrets_ = [k for _, k in created]
    # The stored prefix is for display only; the rest of the key must appear nowhere.
    tails = [k[12:] for k in secrets_]
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            text_cols = [c for c in table.c if isinstance(c.type, String | Text)]
            for row in (await conn.execute(select(*text_cols))).all():
                for value in row:
                    assert not any(t in str(value) for t in tails), (table.name, value)
    if engine.dialect.name != "sqlite":
        return
    await engine.dispose()  # also scan SQLite's raw files, WAL included: nothing hides there
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    assert b"cus_" in raw  # the scan does read the data
    assert not any(t.encode() in raw for t in tails)
