"""Receipts: one per billed transaction that has a customer, numbered in one sequence without gaps.

The number comes from a counter row raised in the very database transaction that bills: a
settlement that rolls back takes its number with it, and the row lock (PostgreSQL) or the database
lock (SQLite) makes concurrent settlements take the numbers one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, Receipt, ReceiptCounter, Transaction, User
from csms.services import bills
from csms.services.money import format_minor
from csms.services.sql import insert_ignoring_conflicts

SERIES = "receipts"  # one operator per deployment, so one series; the printed prefix is a setting


def issue(transaction_id: int, session_id: int | None, user_id: int, total_minor: int, currency: str) -> int:
    """Number the transaction's receipt (in the caller's database transaction); returns the number.
    Called once per transaction, by whoever bills it (its unique key refuses a second)."""
    insert_ignoring_conflicts(db.session, ReceiptCounter, [{"series": SERIES, "last_number": 0}], ["series"])
    number = db.session.execute(
        update(ReceiptCounter)
        .where(ReceiptCounter.series == SERIES)
        .values(last_number=ReceiptCounter.last_number + 1)
        .returning(ReceiptCounter.last_number)
    ).scalar_one()
    db.session.add(
        Receipt(
            series=SERIES,
            number=number,
            transaction_id=transaction_id,
            session_id=session_id,
            user_id=user_id,
            total_minor=total_minor,
            currency=currency,
        )
    )
    return number


def of_transaction(transaction_id: int) -> Receipt | None:
    return db.session.scalar(select(Receipt).where(Receipt.transaction_id == transaction_id))


@dataclass(frozen=True)
class Issuer:
    """Who issues receipts (settings CSMS_OPERATOR_NAME, _ADDRESS, _TAX_ID, CSMS_RECEIPT_PREFIX)."""

    name: str
    address: str
    tax_id: str
    prefix: str


@dataclass(frozen=True)
class ReceiptView:
    """Everything a receipt shows, read once, rendered as HTML or PDF."""

    number: str
    issued_at: datetime
    issuer: Issuer
    customer: str
    charge_point: str
    connector_id: int
    transaction_id: int
    session_id: int | None
    started_at: datetime
    stopped_at: datetime | None
    energy_wh: int
    tariff: dict
    lines: list[tuple[str, str]]  # (label, amount), the total last
    currency: str
    paid: str  # how it was paid
    unbilled: str | None


_PAID = {
    "session": "paid from the prepaid amount of the session",
    "wallet": "paid from the wallet",
    "open_balance": "on account (open balance, invoiced)",
}


def view(receipt: Receipt, issuer: Issuer) -> ReceiptView:
    transaction = db.session.get(Transaction, receipt.transaction_id)
    session = db.session.get(ChargingSession, receipt.session_id) if receipt.session_id else None
    point = db.session.get(ChargePoint, transaction.charge_point_id)
    email = db.session.scalar(select(User.email).where(User.id == receipt.user_id))
    bill = bills.Breakdown.of_doc(transaction.breakdown)
    tariff = transaction.tariff or {}
    lines = [
        (
            f"Energy {transaction.energy_wh or 0} Wh x {tariff.get('energyPrice')}/kWh",
            format_minor(bill.energy),
        ),
        (f"Time x {tariff.get('timePrice')}/h", format_minor(bill.time)),
        ("Session fee", format_minor(bill.session_fee)),
        (f"Tax {tariff.get('taxPercent')} %", format_minor(bill.tax)),
        ("Total", format_minor(bill.total)),
    ]
    unbilled = session.unbilled_minor if session is not None else 0
    return ReceiptView(
        number=f"{issuer.prefix}-{receipt.number:06d}",
        issued_at=receipt.issued_at,
        issuer=issuer,
        customer=email or f"user {receipt.user_id}",
        charge_point=point.charge_point_id,
        connector_id=transaction.connector_id,
        transaction_id=transaction.id,
        session_id=receipt.session_id,
        started_at=transaction.started_at,
        stopped_at=transaction.stopped_at,
        energy_wh=transaction.energy_wh or 0,
        tariff=tariff,
        lines=lines,
        currency=receipt.currency,
        paid=_PAID.get(transaction.billing or "", transaction.billing or ""),
        unbilled=format_minor(unbilled) if unbilled else None,
    )


def _facts(receipt: ReceiptView) -> list[tuple[str, str]]:
    facts = [
        ("Receipt", receipt.number),
        ("Issued", receipt.issued_at.isoformat()),
        ("Customer", receipt.customer),
        ("Charge point", f"{receipt.charge_point} / connector {receipt.connector_id}"),
        ("Transaction", str(receipt.transaction_id)),
        ("Started", receipt.started_at.isoformat()),
        ("Stopped", receipt.stopped_at.isoformat() if receipt.stopped_at else "-"),
        ("Tariff", f"{receipt.tariff.get('name') or 'none'} ({receipt.currency})"),
    ]
    if receipt.session_id is not None:
        facts.insert(5, ("Session", str(receipt.session_id)))
    return facts


def html(receipt: ReceiptView) -> str:
    """A self-contained HTML page (escaped: names and addresses come from people)."""
    issuer = receipt.issuer
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _facts(receipt))
    currency = escape(receipt.currency)
    lines = "".join(
        f"<tr><td>{escape(label)}</td><td class='amount'>{escape(amount)} {currency}</td></tr>"
        for label, amount in receipt.lines
    )
    unbilled = (
        f"<p>Delivered past the prepaid amount and not charged: {escape(receipt.unbilled)} "
        f"{escape(receipt.currency)}</p>"
        if receipt.unbilled
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Receipt {escape(receipt.number)}</title>"
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}"
        "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2em .5em}"
        ".amount{text-align:right}</style></head><body>"
        f"<h1>{escape(issuer.name)}</h1><p>{escape(issuer.address)}<br>Tax id: {escape(issuer.tax_id)}</p>"
        f"<h2>Receipt {escape(receipt.number)}</h2><table>{rows}</table>"
        f"<h3>Charges</h3><table>{lines}</table><p>{escape(receipt.paid.capitalize())}.</p>{unbilled}"
        "</body></html>"
    )


def pdf(receipt: ReceiptView) -> bytes:
    """The receipt as a one-page PDF (fpdf2's core font: text outside Latin-1 is replaced)."""
    # Imported here: fpdf2 (with Pillow) adds a third of a second to every worker's start, for a
    # document few requests ask for.
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    document = FPDF(format="A4")
    document.set_title(f"Receipt {receipt.number}")
    document.add_page()

    def text(value: str) -> str:
        return value.encode("latin-1", "replace").decode("latin-1")

    issuer = receipt.issuer
    document.set_font("Helvetica", "B", 16)
    document.cell(0, 10, text(issuer.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    document.set_font("Helvetica", size=10)
    for line in (issuer.address, f"Tax id: {issuer.tax_id}"):
        document.cell(0, 6, text(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    document.ln(4)
    for label, value in _facts(receipt):
        document.cell(40, 6, text(label))
        document.cell(0, 6, text(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    document.ln(4)
    for label, amount in receipt.lines:
        document.set_font("Helvetica", "B" if label == "Total" else "", 10)
        document.cell(130, 6, text(label))
        document.cell(
            0, 6, text(f"{amount} {receipt.currency}"), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    document.set_font("Helvetica", size=10)
    document.ln(2)
    document.cell(0, 6, text(receipt.paid.capitalize() + "."), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if receipt.unbilled:
        document.cell(
            0,
            6,
            text(f"Delivered past the prepaid amount and not charged: {receipt.unbilled} {receipt.currency}"),
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    return bytes(document.output())
