from datetime import UTC
from decimal import Decimal

from marshmallow import Schema, fields, validate

from csms.models import RegistrationStatus
from csms.models.network import DEFAULT_SECURITY_PROFILE, SECURITY_PROFILES
from csms.schemas import operations
from csms.schemas.common import ID, DecimalString, Money, page_of
from csms.services.analytics import GROUPINGS

PRICE = {"places": 4, "minimum": Decimal(0), "maximum": Decimal(10_000)}


class Station(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    address = fields.String(allow_none=True, validate=validate.Length(max=255))
    latitude = DecimalString(6, Decimal(-90), Decimal(90), allow_none=True)
    longitude = DecimalString(6, Decimal(-180), Decimal(180), allow_none=True)
    # Smart charging (csms.services.load_management): the site's grid connection, one of the two.
    max_current_a = DecimalString(
        1,
        Decimal("0.1"),
        Decimal(100_000),
        data_key="maxCurrentA",
        allow_none=True,
        metadata={"description": "the site's limit per phase (A); the sum allowed never exceeds it"},
    )
    max_power_w = fields.Integer(
        data_key="maxPowerW",
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=2_000_000_000),
        metadata={"description": "the site's limit in W, when it has no maxCurrentA"},
    )
    min_current_a = DecimalString(
        1,
        Decimal(0),
        Decimal(1000),
        data_key="minCurrentA",
        allow_none=True,
        metadata={"description": "below this a car waits (0 A) rather than charging uselessly slowly"},
    )
    strategy = fields.String(
        load_default="equal",  # what a PUT leaving it out goes back to (a PATCH leaves it as it is)
        validate=validate.OneOf(["equal", "priority"]),
        metadata={"description": "equal shares, or by the priority of the tag's owner"},
    )
    created_at = fields.DateTime(data_key="createdAt", dump_only=True)
    updated_at = fields.DateTime(data_key="updatedAt", dump_only=True)


class Tariff(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    currency = fields.String(
        required=True, validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code, e.g. EUR")
    )
    energy_price = DecimalString(data_key="energyPrice", required=True, **PRICE)
    time_price = DecimalString(data_key="timePrice", allow_none=True, **PRICE)
    session_fee = DecimalString(data_key="sessionFee", load_default=Decimal(0), **PRICE)
    reservation_fee = DecimalString(
        data_key="reservationFee",
        load_default=Decimal(0),
        metadata={"description": "held from a customer's wallet per reservation (README: Reservations)"},
        **PRICE,
    )
    tax_percent = DecimalString(2, Decimal(0), Decimal(100), data_key="taxPercent", load_default=Decimal(0))
    is_default = fields.Boolean(data_key="isDefault", load_default=False)
    created_at = fields.DateTime(data_key="createdAt", dump_only=True)
    updated_at = fields.DateTime(data_key="updatedAt", dump_only=True)


class Connector(Schema):
    connector_id = fields.Integer(data_key="connectorId")
    status = fields.String()
    error_code = fields.String(data_key="errorCode")
    info = fields.String(allow_none=True)
    status_at = fields.DateTime(data_key="statusAt", allow_none=True)
    availability = fields.String(
        allow_none=True,
        metadata={"description": "the ChangeAvailability type last asked: Operative|Inoperative"},
    )
    availability_state = fields.String(
        data_key="availabilityState",
        allow_none=True,
        metadata={
            "enum": ["applied", "scheduled", "rejected"],
            "description": "scheduled: after a transaction",
        },
    )


class Connection(Schema):
    """Cluster-wide: the same whichever node answers (csms.cluster.presence)."""

    connected = fields.Boolean()
    node = fields.String(allow_none=True, metadata={"description": "the web node holding the WebSocket"})
    since = fields.DateTime(allow_none=True)
    connected_since = fields.DateTime(
        data_key="connectedSince", allow_none=True, metadata={"description": "the same as `since`"}
    )
    last_message_at = fields.DateTime(
        data_key="lastMessageAt",
        allow_none=True,
        metadata={"description": "known to the node holding the charger; null on other nodes"},
    )


STATUSES = validate.OneOf([s.value for s in RegistrationStatus])
SECURITY_PROFILE = {
    "data_key": "securityProfile",
    "validate": validate.OneOf(SECURITY_PROFILES),
    "metadata": {
        "description": "how the charger connects: 0 without credentials (identified by its URL alone, "
        "for chargers without Basic auth), 1 HTTP Basic auth, 2 HTTP Basic auth over TLS"
    },
}


class PointCreate(Schema):
    charge_point_id = fields.String(
        data_key="chargePointId", required=True, validate=validate.Length(min=1, max=48)
    )
    auth_key = fields.String(data_key="authKey", validate=validate.Length(min=16, max=40), load_only=True)
    connectors = fields.Integer(load_default=1, validate=validate.Range(min=0, max=32))
    station_id = fields.Integer(data_key="stationId", allow_none=True)
    tariff_id = fields.Integer(data_key="tariffId", allow_none=True)
    registration_status = fields.String(
        data_key="registrationStatus", load_default="Accepted", validate=STATUSES
    )
    security_profile = fields.Integer(load_default=DEFAULT_SECURITY_PROFILE, **SECURITY_PROFILE)


class PointReplace(PointCreate):
    """A full update (`PUT`): the create schema's fields, every one not given back to its default;
    the connectors are the charger's own (set at registration) and a key not given is kept."""

    class Meta:
        exclude = ("connectors",)


class PointUpdate(Schema):
    station_id = fields.Integer(data_key="stationId", allow_none=True, validate=ID)
    tariff_id = fields.Integer(data_key="tariffId", allow_none=True, validate=ID)
    registration_status = fields.String(data_key="registrationStatus", validate=STATUSES)
    auth_key = fields.String(data_key="authKey", validate=validate.Length(min=16, max=40), load_only=True)
    security_profile = fields.Integer(**SECURITY_PROFILE)
    max_current_a = DecimalString(
        1,
        Decimal("0.1"),
        Decimal(1000),
        data_key="maxCurrentA",
        allow_none=True,
        metadata={"description": "the most a connector draws per phase (smart charging; default 32)"},
    )


class Point(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    station_id = fields.Integer(data_key="stationId", allow_none=True)
    tariff_id = fields.Integer(data_key="tariffId", allow_none=True)
    registration_status = fields.String(data_key="registrationStatus")
    security_profile = fields.Integer(data_key="securityProfile")
    max_current_a = DecimalString(1, Decimal("0.1"), Decimal(1000), data_key="maxCurrentA", allow_none=True)
    vendor = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    serial_number = fields.String(data_key="serialNumber", allow_none=True)
    firmware_version = fields.String(data_key="firmwareVersion", allow_none=True)
    status = fields.Function(lambda p: next((c.status for c in p.connectors if c.connector_id == 0), None))
    connectors = fields.Function(
        lambda p: Connector(many=True).dump([c for c in p.connectors if c.connector_id > 0])
    )
    last_seen_at = fields.DateTime(data_key="lastSeenAt", allow_none=True)
    last_boot_at = fields.DateTime(data_key="lastBootAt", allow_none=True)
    connection = fields.Nested(Connection, metadata={"description": "as seen by the node that answered"})
    created_at = fields.DateTime(data_key="createdAt")


class PointDetail(Point):
    reservations = fields.List(
        fields.Nested(operations.Reservation),
        metadata={"description": "open reservations (connector 0: the charger)"},
    )
    operations = fields.List(
        fields.Nested(operations.Operation),
        metadata={"description": "the last UnlockConnector, ClearCache, TriggerMessage, ChangeAvailability"},
    )


class PointCreated(Point):
    auth_key = fields.String(data_key="authKey", metadata={"description": "shown once"})


class ListArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))
    q = fields.String(validate=validate.Length(max=100), metadata={"description": "name / id contains"})


class PointListArgs(ListArgs):
    connected = fields.Boolean(metadata={"description": "only chargers connected (true) or not (false)"})


class ByChargePoint(Schema):
    charge_point_id = fields.String(data_key="chargePointId", validate=validate.Length(min=1, max=48))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))


class TransactionRow(Schema):
    id = fields.Integer()
    charge_point_id = fields.String(data_key="chargePointId")
    connector_id = fields.Integer(data_key="connectorId")
    id_tag = fields.String(data_key="idTag")
    state = fields.String()
    meter_start_wh = fields.Integer(data_key="meterStartWh")
    meter_stop_wh = fields.Integer(data_key="meterStopWh", allow_none=True)
    energy_wh = fields.Integer(data_key="energyWh", allow_none=True)
    started_at = fields.DateTime(data_key="startedAt")
    stopped_at = fields.DateTime(data_key="stoppedAt", allow_none=True)
    stop_reason = fields.String(data_key="stopReason", allow_none=True)
    session_id = fields.Integer(data_key="sessionId", allow_none=True)
    cost = Money(allow_none=True)
    billing = fields.String(allow_none=True)  # session | wallet | open_balance | nobody, once billed
    breakdown = fields.Dict(allow_none=True)
    tariff = fields.Dict(allow_none=True)


class MessageRow(Schema):
    id = fields.Integer()
    charge_point_id = fields.String(data_key="chargePointId")
    direction = fields.String()
    message_type = fields.Integer(data_key="messageType")
    unique_id = fields.String(data_key="uniqueId")
    action = fields.String(allow_none=True)
    payload = fields.Raw(allow_none=True)
    error_code = fields.String(data_key="errorCode", allow_none=True)
    received_at = fields.DateTime(data_key="receivedAt")


StationPage = page_of(Station, "StationPage")
TariffPage = page_of(Tariff, "TariffPage")
PointPage = page_of(Point, "PointPage")
TransactionPage = page_of(TransactionRow, "TransactionPage")
MessagePage = page_of(MessageRow, "MessagePage")


class AnalyticsArgs(Schema):
    start = fields.AwareDateTime(
        data_key="from",
        default_timezone=UTC,
        metadata={"description": "inclusive; default: 30 days before `to`"},
    )
    end = fields.AwareDateTime(
        data_key="to", default_timezone=UTC, metadata={"description": "exclusive; default: now"}
    )
    group_by = fields.String(data_key="groupBy", load_default="day", validate=validate.OneOf(GROUPINGS))


class AnalyticsGroup(Schema):
    key = fields.String(metadata={"description": "the day (YYYY-MM-DD), station id or chargePointId"})
    label = fields.String()
    connectors = fields.Integer()
    energy_wh = fields.Integer(data_key="energyWh")
    sessions = fields.Integer()
    revenue = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "per currency"}
    )
    unbilled = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "per currency: delivered past a prepaid amount, not charged"},
    )
    unbilled_wh = fields.Integer(data_key="unbilledWh")
    utilization = fields.Float(metadata={"description": "share of connector time occupied, 0 to 1"})


class AnalyticsReport(Schema):
    start = fields.DateTime(data_key="from")
    end = fields.DateTime(data_key="to")
    group_by = fields.String(data_key="groupBy")
    groups = fields.List(fields.Nested(AnalyticsGroup))
