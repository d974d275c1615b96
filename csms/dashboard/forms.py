"""Command forms built from the OCPP 1.6 schemas, so every CSMS-initiated action has one and none
drifts from what the gateway validates.

A top-level property becomes one input: text, number, a choice for an enum, a checkbox for a boolean,
a date-time field; a nested object or a list (a charging profile, a local authorization list) is
written as JSON. The payload read back from a form goes through the gateway's own schema validation
when it is sent, so this module only turns form text into JSON types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from csms.ocpp.validation import CSMS_ACTIONS, request_schema
from csms.services.errors import InvalidInput

ACTIONS = sorted(CSMS_ACTIONS)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # text, integer, number, choice, boolean, datetime, json
    required: bool
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    description: str = ""

    @property
    def input_id(self) -> str:
        return f"field-{self.name}"


def _kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "choice"
    kind = spec.get("type")
    if kind == "string":
        return "datetime" if spec.get("format") == "date-time" else "text"
    if kind in ("integer", "number", "boolean"):
        return kind
    return "json"  # objects and arrays


def fields_for(action: str) -> list[Field]:
    """The inputs of `action`'s form, required ones first, each in the schema's order."""
    if action not in CSMS_ACTIONS:
        raise InvalidInput(f"{action!r} is not a CSMS-initiated OCPP 1.6 action", code="unknown_action")
    schema = request_schema(action)
    required = set(schema.get("required", ()))
    built = []
    for name, spec in schema.get("properties", {}).items():
        kind = _kind(spec)
        described = "JSON, as in the OCPP 1.6 specification" if kind == "json" else ""
        built.append(
            Field(
                name=name,
                kind=kind,
                required=name in required,
                choices=tuple(spec.get("enum", ())),
                max_length=spec.get("maxLength"),
                description=described,
            )
        )
    return sorted(built, key=lambda field: not field.required)


def payload_from(action: str, form: MultiDict) -> dict[str, Any]:
    """The CALL payload a submitted form describes; an empty optional field is left out. A value that
    is not of its field's type raises `InvalidInput` naming the field."""
    payload: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in fields_for(action):
        if field.kind == "boolean":
            if field.name in form or field.required:
                payload[field.name] = form.get(field.name) in ("on", "true", "1")
            continue
        raw = form.get(field.name, "").strip()
        if not raw:
            if field.required:
                problems[field.name] = "required"
            continue
        try:
            payload[field.name] = _convert(field, raw)
        except ValueError as exc:
            problems[field.name] = str(exc)
    if problems:
        raise InvalidInput("some fields are not valid (see details)", code="invalid_fields", details=problems)
    return payload


def _convert(field: Field, raw: str) -> Any:
    if field.kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError("a whole number") from None
    if field.kind == "number":
        try:
            return float(raw)
        except ValueError:
            raise ValueError("a number") from None
    if field.kind == "json":
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"not JSON: {exc}") from None
    return raw
