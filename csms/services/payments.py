"""Where top-up money comes from. A provider takes the payment and returns its reference; the ledger
credits once per reference.

Only a development provider ships: it approves every top-up without moving real money, so it is
on by default in embedded mode only. Production sets CSMS_PAYMENT_PROVIDER to a real integration.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from csms.services.errors import Conflict


class PaymentProvider(Protocol):
    name: str

    def charge(self, user_id: int, amount_minor: int, currency: str, idempotency_key: str | None) -> str:
        """Take the payment; return the provider's reference for it."""


class DevelopmentProvider:
    """Approves every top-up. For demos and tests: no money moves."""

    name = "development"

    def charge(self, user_id: int, amount_minor: int, currency: str, idempotency_key: str | None) -> str:
        return f"dev:{user_id}:{idempotency_key or uuid.uuid4()}"


def provider(name: str) -> PaymentProvider:
    if name == DevelopmentProvider.name:
        return DevelopmentProvider()
    raise Conflict("no payment provider is configured for top-ups", code="payments_unavailable")
