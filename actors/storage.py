"""Storage of the OCPP message log: every frame, both directions, exactly once."""

import dramatiq

from csms.services import message_log


@dramatiq.actor(queue_name="ocpp_messages", max_retries=10, min_backoff=500, max_backoff=60_000)
def record_exchange(exchange: dict) -> None:
    """Store the frames of one exchange (a CALL and its answer); a redelivery stores nothing new."""
    message_log.record(exchange)
