"""Bearer API keys -> `Principal`, and the role checks routes apply."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection

from contracts import AuthError, ForbiddenError
from ledger.keys import Principal
from service.runtime import Runtime

_PRINCIPAL = "principal"  # the dependency routes take, and its key in the request state


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], runtime: Runtime
) -> Principal:
    """The principal of the request's key, checked once per request."""
    if isinstance(known := connection.state.get(_PRINCIPAL), Principal):
        return known
    principal = await _check_key(connection, runtime)
    connection.state[_PRINCIPAL] = principal
    return principal


async def _check_key(connection: ASGIConnection[Any, Any, Any, Any], runtime: Runtime) -> Principal:
    header = connection.headers.get("authorization")
    if not header:
        raise AuthError(
            "missing API key: send `Authorization: Bearer <key>` (create one with "
            "`fairshare keys create`)"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("malformed Authorization header: expected `Bearer <key>`")
    return await runtime.keys.authenticate(token.strip())


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ForbiddenError(
            f"this route needs a key with role {' or '.join(roles)}; yours is {principal.role}"
        )


def require_owner_access(principal: Principal, owner_id: str) -> None:
    """Admins read any owner's data; an owner key reads only its own."""
    if principal.role == "admin":
        return
    if principal.role == "owner" and principal.owner_id == owner_id:
        return
    raise ForbiddenError("this key may not read another owner's data")
