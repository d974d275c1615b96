"""Fair share per charger: each connection's messages are taken at most `CSMS_CHARGER_RATE` a
second, after a burst of `CSMS_CHARGER_BURST`; a charger sending faster is slowed, not refused.

Every charger is a greenlet on one hub, so a charger that sends without waiting for its answers
(OCPP-J §4.1.1 allows one CALL outstanding) takes the CPU its neighbours' answers wait for. Past
its allowance its greenlet sleeps before each message instead of taking the next one, and reads
nothing meanwhile: the backlog stays in the TCP buffers and, once they are full, in the charger
(flow control), never in the web process.

Why slow rather than refuse with a CALLERROR: nothing is lost, as a CALLERROR to a
transaction-related message counts towards the charger's `TransactionMessageAttempts` (OCPP 1.6,
"Error responses to transaction-related messages"), after which it may drop a StopTransaction,
while a paced message is only answered later; and only pacing bounds what a flood costs, as a
refused message is still read, parsed and answered, while a paced charger costs at most its
allowance. A charger whose backlog outlasts the ping interval is closed by the keepalive: its pong
waits behind its own flood.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_ON_TIME = 1e-6  # seconds: a message due within this is on time (sums of float intervals drift)


class Pacer:
    """The generic cell rate algorithm (a token bucket kept as one number): `due` is when the
    charger's messages so far would have been taken at exactly `rate`; a message may run ahead
    of it by at most `burst` messages, and waits for the rest. One clock read and a few float
    operations per message: a fraction of a microsecond."""

    __slots__ = ("allowance", "due", "interval", "on_paced")

    def __init__(self, rate: float, burst: int, on_paced: Callable[[float], None] | None = None):
        self.interval = 1.0 / rate
        self.allowance = burst * self.interval
        self.due = 0.0
        self.on_paced = on_paced

    def delay(self) -> float:
        """Seconds the next message waits before it is taken (0.0: at once); counts it as taken."""
        now = time.monotonic()
        due = self.due
        due = (due if due > now else now) + self.interval
        self.due = due
        pause = due - now - self.allowance
        if pause < _ON_TIME:
            return 0.0
        if self.on_paced is not None:
            self.on_paced(pause)
        return pause


def pacer_for(config: dict, on_paced: Callable[[float], None] | None = None) -> Pacer | None:
    """The pacer of one connection as configured; None when `CHARGER_RATE` is 0 (no limit)."""
    rate = config["CHARGER_RATE"]
    return Pacer(rate, config["CHARGER_BURST"], on_paced) if rate else None
