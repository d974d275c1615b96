"""Fair share per charger (issue #14, finding 10): one charger flooding Heartbeats without waiting
for its answers must not hold up another charger's. Production mode (the web process on
PostgreSQL and RabbitMQ); no worker, as only the gateway is under test. Speed is measured in
`bench/`; these tests check what happens, with timing bounds the pacing
guarantees (a lower bound on the flood's duration) or that hold with seconds to spare."""

from __future__ import annotations

import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

FLOOD = 1000


def _production(tmp_path, postgres_databases, rabbitmq_url, **env: str):
    return deployment(
        "production",
        tmp_path,
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        with_worker=False,
        charge_points={"FLOOD-1": AUTH_KEY, "OTHER-1": AUTH_KEY},
        env={"CSMS_BOOT_CONFIGURATION": "", **env},
    )


def _read_answers(charger: RawCharger, answers: list, count: int) -> threading.Thread:
    """Collect `count` frames from `charger` in a thread (until it is closed or 30 s pass)."""

    def read() -> None:
        try:
            for _ in range(count):
                answers.append(json.loads(charger.ws.recv(timeout=30)))
        except (ConnectionClosed, TimeoutError):
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def test_a_flooding_charger_is_paced_while_another_is_served(tmp_path, postgres_databases, rabbitmq_url):
    rate, burst = 400, 50
    env = {"CSMS_CHARGER_RATE": str(rate), "CSMS_CHARGER_BURST": str(burst)}
    with (
        _production(tmp_path, postgres_databases, rabbitmq_url, **env) as csms,
        RawCharger(csms.ws_url, "FLOOD-1", AUTH_KEY) as flooder,
        RawCharger(csms.ws_url, "OTHER-1", AUTH_KEY) as other,
    ):
        answers: list[list] = []
        reader = _read_answers(flooder, answers, FLOOD)
        started = time.monotonic()
        for n in range(FLOOD):  # as fast as it can, never waiting for an answer
            flooder.send([2, f"hb-{n}", "Heartbeat", {}])
        others = [other.call("Heartbeat", {}, f"other-{n}") for n in range(20)]
        answered_meanwhile = len(answers)
        reader.join(timeout=30)
        took = time.monotonic() - started

        # The other charger was served while the flood was still being answered, not after it.
        assert [answer[:2] for answer in others] == [[3, f"other-{n}"] for n in range(20)]
        assert answered_meanwhile < FLOOD
        # Every flooded Heartbeat was answered, in order, none refused...
        assert [answer[:2] for answer in answers] == [[3, f"hb-{n}"] for n in range(FLOOD)]
        assert all(list(answer[2]) == ["currentTime"] for answer in answers)
        # ...but past its burst only at the configured rate (unpaced, 1,000 take a tenth of this).
        assert took >= (FLOOD - burst) / rate * 0.95
        paced = csms.health()["gateway"]["paced_messages"]
        assert 0 < paced <= FLOOD - burst  # the burst and the other charger went at once
        log = csms.web.log()
        assert "FLOOD-1: sends faster than CSMS_CHARGER_RATE; its messages are paced" in log
        assert "OTHER-1: sends faster" not in log


def test_a_flood_that_outlasts_the_ping_interval_is_disconnected(tmp_path, postgres_databases, rabbitmq_url):
    """Its pong waits behind its own paced flood, so the keepalive closes it; the others stay."""
    env = {"CSMS_CHARGER_RATE": "100", "CSMS_CHARGER_BURST": "10", "CSMS_PING_INTERVAL": "1"}
    with (
        _production(tmp_path, postgres_databases, rabbitmq_url, **env) as csms,
        RawCharger(csms.ws_url, "FLOOD-1", AUTH_KEY) as flooder,
        RawCharger(csms.ws_url, "OTHER-1", AUTH_KEY) as other,
    ):
        answers: list[list] = []
        reader = _read_answers(flooder, answers, FLOOD)
        for n in range(FLOOD):  # ten seconds of messages at 100 a second
            flooder.send([2, f"hb-{n}", "Heartbeat", {}])
        reader.join(timeout=15)
        assert not reader.is_alive()
        assert flooder.ws.close_code == 1008
        assert flooder.ws.close_reason == "Ping/Pong timeout"
        assert 10 <= len(answers) < FLOOD / 2
        assert other.call("Heartbeat", {}, "still-here")[:2] == [3, "still-here"]
