"""Field types and envelopes shared by every resource."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate

from csms.services.errors import InvalidInput
from csms.services.money import format_minor, parse_amount

# Database ids and OCPP transaction ids are int32: larger numbers are refused as invalid input.
INT32_MAX = 2**31 - 1
ID = validate.Range(min=1, max=INT32_MAX)


class Money(fields.Field):
    """Money as "12.34" in responses; a string or a number with at most two decimals in requests.
    Inside, integers of minor units."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else format_minor(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str | int | float | Decimal) or isinstance(value, bool):
            raise ValidationError('must be a decimal amount such as "12.34"')
        try:
            return parse_amount(
                value if not isinstance(value, float) else repr(value), field=attr or "amount"
            )
        except InvalidInput as exc:
            raise ValidationError(exc.message) from None

    def _jsonschema_type_mapping(self):
        return {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"}


class DecimalString(fields.Decimal):
    """A decimal sent and received as a string ("0.3456"); numbers are accepted on input too."""

    def __init__(self, places: int, minimum: Decimal, maximum: Decimal, **kwargs):
        def within(value: Decimal) -> None:
            if not minimum <= value <= maximum:
                raise ValidationError(f"must be between {minimum} and {maximum}")

        # A plain function, not validate.Range: apispec would write the bounds into the OpenAPI
        # document as strings, which makes the document invalid.
        super().__init__(places=places, as_string=True, validate=within, **kwargs)

    def _jsonschema_type_mapping(self):
        return {"type": "string", "format": "decimal"}


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))


def page_of(item_schema: type[Schema], name: str) -> type[Schema]:
    """A paginated list of `item_schema`: `{items, total, page, perPage}`."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema)),
            "total": fields.Integer(),
            "page": fields.Integer(),
            "per_page": fields.Integer(data_key="perPage"),
        },
        name=name,
    )


class ErrorBody(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Dict()


class Error(Schema):
    error = fields.Nested(ErrorBody)


def replacing(schema: Schema, body: dict, *, keep: tuple[str, ...] = ()) -> dict:
    """A `PUT` body as a full update: every field the body leaves out is cleared (the fields with a
    load default already got it), except those in `keep` (a credential is never cleared by omission)."""
    left_out = {
        field.attribute or name
        for name, field in schema.load_fields.items()
        if (field.attribute or name) not in body and (field.attribute or name) not in keep
    }
    return {**dict.fromkeys(left_out), **body}
