"""Request bodies are decoded strictly: a JSON string where the contract declares a number is a 400.

Litestar converts every handler argument, path and query parameters and the JSON body alike, with
msgspec in lax mode (`strict=False`), because query strings only carry strings. For a JSON body
that lax mode is wrong: `{"top_k": "5"}` would be read as `5` and `{"rerank": "false"}` as `False`,
so a client with a type bug is silently served instead of told. `StrictJsonRequest` checks the
decoded body against the handler's declared `data` type with msgspec's strict rules before
Litestar's own (lax) conversion sees it; parameters keep Litestar's lax parsing.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.serialization import default_deserializer

_AT = " - at `$"


class StrictJsonRequest(Request[Any, Any, Any]):
    """A `Request` whose `json()` refuses values that only lax coercion would accept."""

    async def json(self) -> Any:
        # Malformed JSON, bad UTF-8 and over-deep nesting fail in here exactly as before.
        value = await super().json()
        field = self.route_handler.parsed_data_field
        if field is None or value is None:
            return value  # no declared body type, or no body: Litestar reports what is missing
        try:
            msgspec.convert(
                value,
                field.annotation,
                strict=True,
                dec_hook=partial(
                    default_deserializer, type_decoders=self.route_handler.resolve_type_decoders()
                ),
            )
        except msgspec.ValidationError as exc:
            raise _invalid_body(exc) from exc
        return value


def _invalid_body(exc: msgspec.ValidationError) -> ValidationException:
    """Litestar's own shape for field errors, so the problem+json `detail` reads the same."""
    message, _, path = str(exc).partition(_AT)
    error: dict[str, str] = {"source": "body"}
    if path := path.rstrip("`").lstrip("."):
        error.update(key=path, message=message)
    else:
        error["message"] = f"request body: {message}"
    return ValidationException(detail="request body failed validation", extra=[error])
