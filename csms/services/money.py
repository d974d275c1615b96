"""Money as integers of minor units (cents) inside, two-decimal strings outside; never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from csms.services.errors import InvalidInput

CENT = Decimal("0.01")
MAX_DIGITS = 16  # whole units: 10^16 units are 10^18 minor units, within a signed 64-bit column


def format_minor(amount_minor: int) -> str:
    """1234 → "12.34"."""
    return str((Decimal(amount_minor) * CENT).quantize(CENT))


def parse_amount(value: str | int | Decimal, *, field: str = "amount") -> int:
    """ "12.34", 12.34 or 12 → 1234 minor units; more than two decimals or a non-number is refused."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a decimal amount", code="invalid_amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidInput(f"{field} must be a decimal amount", code="invalid_amount") from None
    if amount.is_finite() and amount.adjusted() >= MAX_DIGITS:  # before quantize, which it would overflow
        raise InvalidInput(f"{field} must be below 10^{MAX_DIGITS}", code="invalid_amount")
    if not amount.is_finite() or amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        raise InvalidInput(f"{field} must have at most two decimals", code="invalid_amount")
    return int(amount / CENT)
