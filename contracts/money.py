"""Money as integer micros (1e-6 of the currency unit) plus an ISO 4217 code.

No floats anywhere money flows: every amount is an int, and every split is exact.
"""

from __future__ import annotations

import msgspec

from contracts.errors import InvalidInput
from contracts.types import CurrencyCode, Micros

MICROS_PER_UNIT = 1_000_000
BPS_DENOMINATOR = 10_000

# Minor-unit exponents from ISO 4217 for the currencies we settle in. A currency missing here is
# refused rather than guessed: its rounding at payout time would otherwise be wrong.
MINOR_UNITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "SGD": 2,
    "HKD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "INR": 2,
    "IDR": 2,
    "MYR": 2,
    "PHP": 2,
    "THB": 2,
    "ZAR": 2,
    "BRL": 2,
    "MXN": 2,
    "CNY": 2,
    "KES": 2,
    "NGN": 2,
    "EGP": 2,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}


def check_currency(code: str) -> str:
    """Return `code` if it is a currency we can settle in, else raise InvalidInput."""
    if code not in MINOR_UNITS:
        raise InvalidInput(f"unsupported currency {code!r}: expected an ISO 4217 code we settle in")
    return code


class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An amount in integer micros of one currency."""

    micros: Micros
    currency: CurrencyCode

    def __post_init__(self) -> None:
        check_currency(self.currency)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise InvalidInput(f"cannot add {other.currency} to {self.currency}")
        return Money(self.micros + other.micros, self.currency)


def split_price(price_micros: int, owner_share_bps: int) -> tuple[int, int]:
    """Split one hit's price into (owner_micros, platform_micros); the two always sum to the price.

    The owner's share is rounded half up, so a tie in the last micro goes to the owner, not to us.
    """
    if price_micros < 0 or not 0 <= owner_share_bps <= BPS_DENOMINATOR:
        raise InvalidInput("price must be >= 0 and owner share within 0..10000 basis points")
    owner = (price_micros * owner_share_bps * 2 + BPS_DENOMINATOR) // (2 * BPS_DENOMINATOR)
    return owner, price_micros - owner
