"""The actors the web side sends to, addressed by queue and actor name.

The web process never imports an actor module: it builds a `dramatiq.Message` from the address, and
whichever worker consumes that queue finds the actor by name. So the web side needs neither the
actors' code nor the broker they are bound to, and a worker needs nothing of the web side. A test
holds each address equal to the actor it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dramatiq


@dataclass(frozen=True)
class ActorAddress:
    queue_name: str
    actor_name: str
    max_batch: int | None = None  # fewer exchanges per message than `HANDOFF_BATCH`, where each costs much

    def message(self, *args: Any) -> dramatiq.Message:
        """A message for the actor, as `Actor.message` builds it: the actor's own retry options
        apply where it is consumed."""
        return dramatiq.Message(
            queue_name=self.queue_name, actor_name=self.actor_name, args=args, kwargs={}, options={}
        )


RECORD_EXCHANGES = ActorAddress("ocpp_messages", "record_exchanges")
PROCESS_METER_VALUES = ActorAddress("metering", "process_meter_values")
# A batch holds its transactions' rows locked until it commits, and MeterValues of those
# transactions wait for it: a few hundred StartTransactions of a connect storm (several queries
# each) made them wait seconds.
PROCESS_TRANSACTION_MESSAGES = ActorAddress("transactions", "process_transaction_messages", max_batch=20)
RECORD_COMMANDS = ActorAddress("commands", "record_commands")
RECORD_CMS_EVENTS = ActorAddress("cms_events", "record_cms_events")
NOTIFY = ActorAddress("notifications", "notify")
SYNC_LOCAL_LISTS = ActorAddress("commands", "sync_local_lists")
RELAY_EVENTS = ActorAddress("integration_events", "relay_events")
REALLOCATE_SITES = ActorAddress("smart_charging", "reallocate_sites")

# Where each exchange goes: the actor of its concern stores its frames in the same database
# transaction as its effect, so each exchange reaches the workers once.
_BY_ACTION = {
    "MeterValues": PROCESS_METER_VALUES,
    "StartTransaction": PROCESS_TRANSACTION_MESSAGES,
    "StopTransaction": PROCESS_TRANSACTION_MESSAGES,
}


def for_exchange(action: str | None, *, command: bool) -> ActorAddress:
    """The actor for an exchange: a CSMS-initiated call's audit, or the concern of the charger's action."""
    if command:
        return RECORD_COMMANDS
    return _BY_ACTION.get(action, RECORD_EXCHANGES)  # type: ignore[arg-type]
