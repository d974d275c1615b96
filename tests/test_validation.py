"""The generated (fastjsonschema) validators and `jsonschema` agree on what is valid, so the fast
path can never let through a payload the reference validator would refuse."""

from __future__ import annotations

import pytest

from csms.ocpp import validation

METER = {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1.5", "unit": "kWh"}]}
CASES = [
    ("Heartbeat", {}),
    ("Heartbeat", {"extra": 1}),
    ("MeterValues", {"connectorId": 1, "transactionId": 5, "meterValue": [METER]}),
    ("MeterValues", {"connectorId": 1, "meterValue": []}),
    ("MeterValues", {"connectorId": "1", "meterValue": [METER]}),
    ("MeterValues", {"connectorId": 1.0, "meterValue": [METER]}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{**METER, "timestamp": "yesterday"}]}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{**METER, "timestamp": "2026-01-01T00:00:00+02:00"}]}),
    (
        "MeterValues",
        {"connectorId": 1, "meterValue": [{"timestamp": METER["timestamp"], "sampledValue": [{}]}]},
    ),
    (
        "MeterValues",
        {"connectorId": 1, "meterValue": [{**METER, "sampledValue": [{"value": "1", "unit": "J"}]}]},
    ),
    ("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
    ("BootNotification", {"chargePointVendor": "V" * 21, "chargePointModel": "M"}),
    ("BootNotification", {"chargePointVendor": None, "chargePointModel": "M"}),
    (
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
    ),
    ("StartTransaction", {"connectorId": 1, "idTag": "T" * 21, "meterStart": 0, "timestamp": "2026-01-01"}),
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Sleeping"}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": "2026-01-01T00:00:00.123Z"}),
    ("StopTransaction", {"transactionId": 1, "meterStop": True, "timestamp": "2026-01-01T00:00:00Z"}),
    ("DataTransfer", {"vendorId": "v", "data": "anything"}),
    ("DataTransfer", []),
]


@pytest.mark.parametrize(("action", "payload"), CASES)
def test_the_fast_validator_agrees_with_jsonschema(action, payload):
    reference_accepts = not list(validation._validator(action).iter_errors(payload))
    try:
        validation._fast_validator(action)(payload)
        fast_accepts = True
    except validation.fastjsonschema.JsonSchemaException:
        fast_accepts = False
    assert fast_accepts == reference_accepts
