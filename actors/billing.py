"""Settling a finished session: capture its cost from the hold, refund the rest, exactly once."""

import logging

import dramatiq

from actors.notifications import publish
from csms.realtime import customer_room
from csms.services import billing
from csms.services.money import format_minor

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name="billing", max_retries=20, min_backoff=1_000, max_backoff=300_000)
def settle_session(session_id: int) -> None:
    """Bill the session once its transaction has stopped; a second run finds it settled."""
    settlement = billing.settle(session_id)
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
    publish("charging:stopped", stopped_event(settlement), [customer_room(settlement.user_id)])


def stopped_event(settlement: billing.Settlement) -> dict:
    """The `charging:stopped` event of a settled session."""
    return {
        "sessionId": settlement.session_id,
        "energyWh": settlement.energy_wh,
        "cost": format_minor(settlement.captured_minor),
        "refunded": format_minor(settlement.refunded_minor),
    }
