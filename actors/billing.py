"""Settling a finished session: capture its cost from the hold, refund the rest, exactly once."""

import logging

import dramatiq
from flask import current_app
from sqlalchemy.exc import OperationalError

from actors import priorities
from actors.notifications import publish
from csms.extensions import db
from csms.realtime import customer_room
from csms.services import billing, charging
from csms.services.chargers import parse_boot_configuration
from csms.services.money import format_minor

log = logging.getLogger(__name__)

# Money waits for the database, never the other way round: retried for up to about an hour.
# (Options, not one decorator: a `dramatiq.actor(...)` decorator names every function it decorates
# after the first.)
BILLING = {
    "queue_name": "billing",
    "max_retries": 20,
    "min_backoff": 1_000,
    "max_backoff": 300_000,
    "priority": priorities.BOOKKEEPING,
}


@dramatiq.actor(**BILLING)
def settle_session(session_id: int) -> None:
    """Bill the session once its transaction has stopped; a second run finds it settled. The charger
    gets its usual MeterValueSampleInterval back (CSMS_BOOT_CONFIGURATION's) in the same commit."""
    settlement = billing.settle_in_transaction(session_id)
    if settlement is not None and settlement.newly_settled:
        usual = dict(parse_boot_configuration(current_app.config["BOOT_CONFIGURATION"]))
        if charging.SAMPLE_INTERVAL_KEY in usual:
            charging.restore_sample_interval(session_id, usual[charging.SAMPLE_INTERVAL_KEY])
    db.session.commit()
    if settlement is None or not settlement.newly_settled:
        return
    log.info(
        "session %s billed: %s Wh, %s captured, %s refunded",
        settlement.session_id,
        settlement.energy_wh,
        format_minor(settlement.captured_minor),
        format_minor(settlement.refunded_minor),
        extra={"sessionId": settlement.session_id, "userId": settlement.user_id},
    )
    publish(
        "charging:stopped",
        stopped_event(settlement),
        [customer_room(settlement.user_id)],
        charger_id=settlement.charge_point_pk,
    )


@dramatiq.actor(**BILLING)
def bill_transaction(transaction_id: int) -> None:
    """Bill a stopped transaction no app session pays for (its tag's owner, or no one); once."""
    billing.bill_transaction(transaction_id)
    db.session.commit()


@dramatiq.actor(**BILLING)
def bill_transactions(transaction_ids: list) -> None:
    """`bill_transaction` for a batch's stopped transactions, in one database transaction: a
    message each cost its sender a publisher confirm apiece, and the Stop batch's thread waited for
    them in turn. One that fails is billed on its own (`bill_transaction`, its own retries)."""
    try:
        # all of them locked first, in id order, as every batch locks transactions: one at a time
        # in the batch's order deadlocked with a MeterValues batch
        locked = charging.lock_and_load_transactions(transaction_ids)
        billing.bill_locked([locked[transaction_id] for transaction_id in sorted(locked)])
        db.session.commit()
        return
    except OperationalError:
        db.session.rollback()
        raise  # database away or a deadlock: the whole batch again later
    except Exception:
        db.session.rollback()
        if len(transaction_ids) == 1:
            raise
        log.exception(
            "billing %d transactions together failed; billing them one by one", len(transaction_ids)
        )
    for transaction_id in transaction_ids:
        bill_transaction.send(transaction_id)


def stopped_event(settlement: billing.Settlement) -> dict:
    """The `charging:stopped` event of a settled session."""
    return {
        "sessionId": settlement.session_id,
        "energyWh": settlement.energy_wh,
        "cost": format_minor(settlement.captured_minor),
        "refunded": format_minor(settlement.refunded_minor),
        "unbilled": format_minor(settlement.unbilled_minor),  # past the prepaid amount, not charged
    }
