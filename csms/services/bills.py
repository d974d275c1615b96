"""A bill that explains itself: the tariff as it was when the transaction started, and the price's
lines (energy, time, session fee, tax) that add up to the total exactly.

The total follows SPEC "Tariffs and money" (one half-up rounding at the end). The lines are that
same net amount shared out in whole cents by largest remainder, so they never go negative and always
sum to it; tax is what the rounding of the gross adds to the net.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, Tariff, Transaction
from csms.services import billing
from csms.services.money import format_minor
from csms.services.sql import any_of


def snapshot_of(tariff: Tariff | None) -> dict:
    """The tariff's prices as decimal strings, with its name: what a bill is computed from."""
    if tariff is None:
        return {"id": None, "name": None, "currency": None, **_prices_doc(billing.Prices.of(None))}
    return {
        "id": tariff.id,
        "name": tariff.name,
        "currency": tariff.currency,
        **_prices_doc(billing.Prices.of(tariff)),
    }


def _prices_doc(prices: billing.Prices) -> dict:
    return {
        "energyPrice": str(prices.energy_price),
        "timePrice": str(prices.time_price),
        "sessionFee": str(prices.session_fee),
        "taxPercent": str(prices.tax_percent),
    }


def prices_of(snapshot: dict) -> billing.Prices:
    return billing.Prices(
        Decimal(snapshot["energyPrice"]),
        Decimal(snapshot["timePrice"]),
        Decimal(snapshot["sessionFee"]),
        Decimal(snapshot["taxPercent"]),
    )


def snapshot(
    transaction: Transaction, tariffs: Tariffs | None = None, *, may_have_session: bool = True
) -> dict:
    """Take the transaction's tariff snapshot if it has none yet, and return it.

    Taken when the start is processed (or the stop, if that came first): the tariff of the app session
    waiting for it, else the charge point's, else the default one. Once taken it never changes.
    A batch passes its `Tariffs`, and `may_have_session=False` for a transaction no session can
    name (`charging.Waiting`).
    """
    if transaction.tariff is None:
        tariffs = tariffs or Tariffs([transaction.charge_point_id])
        tariff_id = None
        if may_have_session:
            tariff_id = db.session.scalar(
                select(ChargingSession.tariff_id).where(ChargingSession.transaction_id == transaction.id)
            )
        transaction.tariff = snapshot_of(tariffs.of(tariff_id, transaction.charge_point_id))
    return transaction.tariff


class Tariffs:
    """The tariffs a batch of transactions is priced with, read once for the batch: the charge
    points' own, and the default one."""

    def __init__(self, charge_point_pks: Iterable[int]) -> None:
        pks = set(charge_point_pks)
        self._of_charger = (
            dict(
                db.session.execute(
                    select(ChargePoint.id, ChargePoint.tariff_id).where(
                        any_of(db.session, ChargePoint.id, pks)
                    )
                ).all()
            )
            if pks
            else {}
        )

    def of(self, tariff_id: int | None, charge_point_pk: int) -> Tariff | None:
        """The session's tariff if it has one, else the charge point's, else the default one."""
        tariff_id = tariff_id or self._of_charger.get(charge_point_pk)
        tariff = db.session.get(Tariff, tariff_id) if tariff_id is not None else None
        return tariff if tariff is not None else self.default

    @functools.cached_property
    def default(self) -> Tariff | None:
        return db.session.scalar(select(Tariff).where(Tariff.is_default.is_(True)))


@dataclass(frozen=True)
class Breakdown:
    """A price in minor units, line by line; `total` = energy + time + sessionFee + tax."""

    energy: int
    time: int
    session_fee: int
    tax: int
    total: int

    def as_doc(self) -> dict:
        return {
            "energy": self.energy,
            "time": self.time,
            "sessionFee": self.session_fee,
            "tax": self.tax,
            "total": self.total,
        }

    @classmethod
    def of_doc(cls, doc: dict) -> Breakdown:
        return cls(doc["energy"], doc["time"], doc["sessionFee"], doc["tax"], doc["total"])

    def formatted(self) -> dict:
        return {
            ("sessionFee" if name == "session_fee" else name): format_minor(value)
            for name, value in asdict(self).items()
        }


def breakdown(prices: billing.Prices, energy_wh: int, duration: timedelta) -> Breakdown:
    kwh = Decimal(max(energy_wh, 0)) / 1000
    hours = Decimal(max(duration.total_seconds(), 0)) / 3600
    exact = [kwh * prices.energy_price * 100, hours * prices.time_price * 100, prices.session_fee * 100]
    net = billing.to_minor(sum(exact, Decimal(0)) / 100)
    lines = [int(part.to_integral_value(rounding=ROUND_FLOOR)) for part in exact]
    by_remainder = sorted(range(3), key=lambda i: exact[i] - lines[i], reverse=True)
    for i in by_remainder[: net - sum(lines)]:
        lines[i] += 1
    total = billing.to_minor(billing.cost(prices, energy_wh, duration))
    return Breakdown(lines[0], lines[1], lines[2], total - net, total)


def price(transaction: Transaction) -> Breakdown:
    """The stopped transaction's bill, from its snapshot; stored on it."""
    prices = prices_of(snapshot(transaction))
    duration = (transaction.stopped_at or transaction.started_at) - transaction.started_at
    bill = breakdown(prices, transaction.energy_wh or 0, duration)
    transaction.cost_minor = bill.total
    transaction.breakdown = bill.as_doc()
    return bill


def bill_view(transaction: Transaction | None) -> dict | None:
    """The bill as the API shows it: the lines as money strings and the tariff snapshot."""
    if transaction is None or transaction.breakdown is None:
        return None
    return {
        "breakdown": Breakdown.of_doc(transaction.breakdown).formatted(),
        "tariff": transaction.tariff,
    }
