"""Production-mode guarantees of the gateway under load and faults, with real PostgreSQL, RabbitMQ
and a `dramatiq csms.worker actors` worker. The web process reaches RabbitMQ through a TCP proxy the test
controls, which also counts the AMQP connections the web process holds."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.support.deployment import AUTH_KEY, deployment
from tests.support.fleet import run_fleet
from tests.support.processes import TcpProxy, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def transaction_script(charge_point_id: str, n_meter_values: int = 1):
    start = {"connectorId": 1, "idTag": "TAG-LOAD", "meterStart": 0, "timestamp": "2026-07-01T10:00:00Z"}
    yield "BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Load"}
    yield "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
    yield "StartTransaction", start
    yield "Heartbeat", {}
    for n in range(n_meter_values):
        yield (
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 1,
                "meterValue": [
                    {
                        "timestamp": f"2026-07-01T10:{n + 1:02d}:00Z",
                        "sampledValue": [{"value": str(100 * (n + 1))}],
                    }
                ],
            },
        )
    yield "StopTransaction", {"transactionId": 1, "meterStop": 500, "timestamp": "2026-07-01T11:00:00Z"}


def stored_charger_calls(csms, prefix: str) -> int:
    return csms.scalar(
        "SELECT count(*) FROM ocpp_messages WHERE direction = 'in' AND message_type = 2"
        " AND charge_point_id LIKE :prefix",
        prefix=f"{prefix}%",
    )


def parked_items(csms) -> int:
    """Exchanges waiting in the outbox: each row is one Dramatiq message carrying a batch of them
    (load management's triggers, one per charger that leaves, are not exchanges)."""
    return csms.scalar(
        "SELECT coalesce(sum(json_array_length(convert_from(body, 'UTF8')::json -> 'args' -> 0)), 0)"
        " FROM outbox WHERE convert_from(body, 'UTF8')::json ->> 'actor_name' <> 'reallocate_sites'"
    )


@pytest.fixture
def rabbitmq_proxy(rabbitmq_url):
    proxy = TcpProxy(5672).start()
    yield proxy
    proxy.stop()


def _through(proxy: TcpProxy, rabbitmq_url: str) -> str:
    """`rabbitmq_url` (its credentials and vhost: the worker's) by way of the proxy."""
    parts = urlsplit(rabbitmq_url)
    credentials, _, _ = parts.netloc.rpartition("@")
    address = f"127.0.0.1:{proxy.port}"
    return parts._replace(netloc=f"{credentials}@{address}" if credentials else address).geturl()


@pytest.fixture
def behind_proxy(tmp_path, postgres_databases, rabbitmq_url, rabbitmq_proxy):
    """Starts a production deployment whose web process reaches RabbitMQ only through the proxy."""

    def start(fleet: dict[str, str], **options):
        return deployment(
            "production",
            tmp_path,
            database_url=postgres_databases(),
            rabbitmq_url=rabbitmq_url,
            web_rabbitmq_url=_through(rabbitmq_proxy, rabbitmq_url),
            charge_points=fleet,
            **options,
        )

    return start


def test_a_thousand_chargers_share_at_most_four_amqp_connections(behind_proxy, rabbitmq_proxy):
    fleet = {f"LOAD-{n:04d}": AUTH_KEY for n in range(1000)}
    with behind_proxy(fleet) as csms:
        result = run_fleet(csms.ws_url, fleet, transaction_script)
        assert result.failures == []
        assert [answer for answer in result.answers if answer[0] != 3] == []
        assert len(result.results) == 1000 * 6
        assert rabbitmq_proxy.peak_connections <= 4, rabbitmq_proxy.peak_connections
        # nothing answered is lost: every call the chargers made is stored by the worker
        assert wait_until(lambda: stored_charger_calls(csms, "LOAD-") == 6000, timeout=120), (
            stored_charger_calls(csms, "LOAD-")
        )
        # concurrent chargers' exchanges share RabbitMQ messages (and the worker's transactions)
        handoff = csms.health()["gateway"]["handoff"]
        assert handoff["items"] >= 6000
        assert handoff["batches"] < handoff["items"] / 2, handoff


def test_broker_outage_parks_messages_in_the_outbox_and_relays_them(behind_proxy, rabbitmq_proxy):
    fleet = {f"FAULT-{n:03d}": AUTH_KEY for n in range(50)}
    with behind_proxy(fleet, env={"CSMS_BOOT_CONFIGURATION": ""}) as csms:
        assert wait_until(lambda: rabbitmq_proxy.open_connections >= 1, timeout=20)
        rabbitmq_proxy.cut()  # RabbitMQ is gone for the web process

        result = run_fleet(csms.ws_url, fleet, lambda cp: transaction_script(cp, n_meter_values=3))
        assert result.failures == []
        answered = len(result.results)
        assert answered == 50 * 8  # every call got its CALLRESULT, none an error
        # the durable ones were parked before they were answered; the others shortly after
        assert wait_until(lambda: parked_items(csms) == answered, timeout=20), (
            parked_items(csms),
            csms.web.log()[-3000:],
        )
        assert stored_charger_calls(csms, "FAULT-") == 0

        rabbitmq_proxy.restore()  # RabbitMQ is back
        assert wait_until(lambda: csms.scalar("SELECT count(*) FROM outbox") == 0, timeout=60)
        assert wait_until(lambda: stored_charger_calls(csms, "FAULT-") == answered, timeout=60)
        assert "relayed" in csms.web.log()
