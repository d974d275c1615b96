"""Schema validation of OCPP 1.6 payloads, both directions, with the library's own JSON schemas.

The `ocpp` package ships the official 1.6 schemas; this module compiles each once (Draft 4, with a
date-time format check the library leaves out). Every payload passes through a validator that
`fastjsonschema` generated from the schema (a few microseconds, where `jsonschema` takes tens); only
a payload it rejects goes through `jsonschema` too, which picks the error to report and has the last
word. A violation maps to the 1.6 CALLERROR code that names it: a missing field is an occurrence
violation, a wrong JSON type or an over-long string a type violation, a value outside an enum or
range a property violation, an unknown field or a payload that is not an object a formation
violation.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match

from csms.ocpp import errors
from csms.ocpp.errors import OcppError
from csms.services.bounds import INT32_MAX, INT32_MIN, MAX_READING

SCHEMAS = Path(ocpp.__file__).resolve().parent / "v16" / "schemas"

# Charger → CSMS (OCPP 1.6 core and the other feature profiles).
CHARGER_ACTIONS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
    }
)
# CSMS → charger.
CSMS_ACTIONS = frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
    }
)
# Schemas with `multipleOf: 0.1` on numbers: binary floats would fail them, so these payloads are
# checked as Decimals (the library does the same).
_DECIMAL_SCHEMAS = frozenset({"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"})

_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


def _is_date_time_string(value: str) -> bool:
    try:
        return _is_date_time(value)
    except ValueError:
        return False


_CODES = {
    "required": errors.OCCURENCE_CONSTRAINT_VIOLATION,
    "minItems": errors.OCCURENCE_CONSTRAINT_VIOLATION,
    "maxItems": errors.OCCURENCE_CONSTRAINT_VIOLATION,
    "type": errors.TYPE_CONSTRAINT_VIOLATION,
    "maxLength": errors.TYPE_CONSTRAINT_VIOLATION,
    "minLength": errors.TYPE_CONSTRAINT_VIOLATION,
    "format": errors.TYPE_CONSTRAINT_VIOLATION,
    "enum": errors.PROPERTY_CONSTRAINT_VIOLATION,
    "minimum": errors.PROPERTY_CONSTRAINT_VIOLATION,
    "maximum": errors.PROPERTY_CONSTRAINT_VIOLATION,
    "multipleOf": errors.PROPERTY_CONSTRAINT_VIOLATION,
    "additionalProperties": errors.FORMATION_VIOLATION,
}


def _schema(schema_name: str) -> dict[str, Any]:
    parse_float = Decimal if schema_name in _DECIMAL_SCHEMAS else float
    return json.loads((SCHEMAS / f"{schema_name}.json").read_text(encoding="utf-8"), parse_float=parse_float)


@functools.cache
def _validator(schema_name: str) -> Draft4Validator:
    return Draft4Validator(_schema(schema_name), format_checker=_format_checker)


@functools.cache
def _fast_validator(schema_name: str) -> Any:
    """The generated validator, or None for the schemas checked as Decimals (`multipleOf`)."""
    if schema_name in _DECIMAL_SCHEMAS:
        return None
    return fastjsonschema.compile(
        _schema(schema_name), formats={"date-time": _is_date_time_string}, use_default=False
    )


def _describe(error: ValidationError) -> OcppError:
    path = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "type" and not path:
        code = errors.FORMATION_VIOLATION  # the payload itself is not an object
    else:
        code = _CODES.get(str(error.validator), errors.FORMATION_VIOLATION)
    where = f" at '{path}'" if path else ""
    message = error.message
    if error.validator == "enum":  # the library's message lists every allowed value; too long to send
        message = f"{error.instance!r} is not an allowed value"
    return OcppError(code, f"{message}{where}", {"path": path, "rule": str(error.validator)})


def _check(schema_name: str, payload: Any) -> None:
    fast = _fast_validator(schema_name)
    if fast is not None:
        try:
            fast(payload)
            return
        except fastjsonschema.JsonSchemaException:
            pass  # described below
    validator = _validator(schema_name)
    try:
        if schema_name in _DECIMAL_SCHEMAS:
            payload = json.loads(json.dumps(payload), parse_float=Decimal)
        error = best_match(validator.iter_errors(payload))
    except RecursionError:  # jsonschema describes a deeply nested value recursively
        raise OcppError(errors.FORMATION_VIOLATION, "payload nests too deeply", {"rule": "depth"}) from None
    if error is not None:
        raise _describe(error)


# Rules the 1.6 schemas leave out: connector 0 is the charge point itself and carries no transaction.
_MIN_CONNECTOR = {"StatusNotification": 0, "MeterValues": 0, "StartTransaction": 1}


def _check_meaning(action: str, payload: dict[str, Any]) -> None:
    minimum = _MIN_CONNECTOR.get(action)
    if minimum is not None and payload["connectorId"] < minimum:
        raise OcppError(
            errors.PROPERTY_CONSTRAINT_VIOLATION,
            f"connectorId must be at least {minimum} at 'connectorId'",
            {"path": "connectorId", "rule": "minimum"},
        )
    if action == "StartTransaction":
        _check_start(payload)


# A StartTransaction is answered with the transactionId it is given in the database, before the
# answer: a number the schema allows but no transaction row (and no real meter or connector) can
# hold is refused with the 1.6 code that names it, instead of an InternalError the charger would
# retry for ever. (An idTag with NUL is stored with the mark `bounds` uses and answered Invalid;
# values of the other actions are bounded where they are applied: csms.services.bounds.)
_START_RANGES = (
    ("connectorId", 1, INT32_MAX),
    ("meterStart", 0, int(MAX_READING) - 1),
    ("reservationId", INT32_MIN, INT32_MAX),
)


def _check_start(payload: dict[str, Any]) -> None:
    for name, low, high in _START_RANGES:
        value = payload.get(name)
        if value is not None and not low <= value <= high:
            raise OcppError(
                errors.PROPERTY_CONSTRAINT_VIOLATION,
                f"{value} is outside {low}..{high} at '{name}'",
                {"path": name, "rule": "range"},
            )


def validate_request(action: str, payload: Any) -> None:
    """Check a CALL payload for `action`; raises `OcppError` with the 1.6 code."""
    _check(action, payload)
    _check_meaning(action, payload)


def validate_response(action: str, payload: Any) -> None:
    """Check a CALLRESULT payload answering `action`; raises `OcppError` with the 1.6 code."""
    _check(f"{action}Response", payload)


def warm_up() -> None:
    """Compile every schema up front, so the first charger does not pay for it."""
    for action in CHARGER_ACTIONS | CSMS_ACTIONS:
        for name in (action, f"{action}Response"):
            _validator(name)
            _fast_validator(name)


def request_schema(action: str) -> dict[str, Any]:
    """The 1.6 JSON schema of `action`'s CALL payload; the dashboard builds its command forms from it."""
    return _schema(action)
