"""Smart charging: OCPP 1.6 charging profiles as operators send them (the `csChargingProfiles` object
of SetChargingProfile, §7.8, field for field), stored profiles, composite schedules, a site's load."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from csms.schemas.common import PageArgs, page_of
from csms.services import charging_schedules

INT32 = validate.Range(min=-(2**31), max=2**31 - 1)
CHARGER = {"data_key": "chargePointId", "required": True, "validate": validate.Length(min=1, max=48)}
CONNECTOR = validate.Range(min=0, max=2**31 - 1)
# OCPP decimals carry one digit after the point; a limit is at most what a grid connection carries.
LIMIT = validate.Range(min=0, max=10_000_000)


class SchedulePeriod(Schema):
    start_period = fields.Integer(data_key="startPeriod", required=True, strict=True, validate=CONNECTOR)
    limit = fields.Float(required=True, allow_nan=False, validate=LIMIT)
    number_phases = fields.Integer(
        data_key="numberPhases", strict=True, validate=validate.Range(min=1, max=3)
    )


class Schedule(Schema):
    duration = fields.Integer(strict=True, validate=CONNECTOR)
    start_schedule = fields.AwareDateTime(data_key="startSchedule")
    charging_rate_unit = fields.String(
        data_key="chargingRateUnit", required=True, validate=validate.OneOf(charging_schedules.UNITS)
    )
    charging_schedule_period = fields.List(
        fields.Nested(SchedulePeriod),
        data_key="chargingSchedulePeriod",
        required=True,
        validate=validate.Length(min=1, max=100),
    )
    min_charging_rate = fields.Float(data_key="minChargingRate", allow_nan=False, validate=LIMIT)


class Profile(Schema):
    """`csChargingProfiles` (OCPP 1.6 §7.7)."""

    charging_profile_id = fields.Integer(
        data_key="chargingProfileId", required=True, strict=True, validate=INT32
    )
    transaction_id = fields.Integer(data_key="transactionId", strict=True, validate=INT32)
    stack_level = fields.Integer(data_key="stackLevel", required=True, strict=True, validate=CONNECTOR)
    charging_profile_purpose = fields.String(
        data_key="chargingProfilePurpose", required=True, validate=validate.OneOf(charging_schedules.PURPOSES)
    )
    charging_profile_kind = fields.String(
        data_key="chargingProfileKind", required=True, validate=validate.OneOf(charging_schedules.KINDS)
    )
    recurrency_kind = fields.String(
        data_key="recurrencyKind", validate=validate.OneOf(sorted(charging_schedules.RECURRENCY))
    )
    valid_from = fields.AwareDateTime(data_key="validFrom")
    valid_to = fields.AwareDateTime(data_key="validTo")
    charging_schedule = fields.Nested(Schedule, data_key="chargingSchedule", required=True)


class NewChargingProfile(Schema):
    charge_point_id = fields.String(**CHARGER)
    connector_id = fields.Integer(data_key="connectorId", required=True, strict=True, validate=CONNECTOR)
    cs_charging_profiles = fields.Nested(Profile, data_key="csChargingProfiles", required=True)

    @validates_schema
    def _rules(self, data, **kwargs):
        """The OCPP rules beyond each field's own (csms.services.charging_schedules.problems)."""
        profile = Profile().dump(data["cs_charging_profiles"])
        found = charging_schedules.problems(profile, data["connector_id"])
        if found:
            raise ValidationError(found, "csChargingProfiles")


class ChargingProfile(Schema):
    id = fields.Integer()
    charge_point_id = fields.Method("_charger", data_key="chargePointId")
    connector_id = fields.Integer(data_key="connectorId")
    profile_id = fields.Integer(data_key="chargingProfileId")
    purpose = fields.String()
    stack_level = fields.Integer(data_key="stackLevel")
    transaction_id = fields.Integer(data_key="transactionId", allow_none=True)
    profile = fields.Dict(data_key="csChargingProfiles")
    source = fields.String(metadata={"description": "operator, or load (the load manager's own)"})
    status = fields.String(
        metadata={
            "description": "the charger's answer (Accepted, Rejected, NotSupported), failed, or cleared"
        }
    )
    response = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    answered_at = fields.DateTime(data_key="answeredAt", allow_none=True)
    cleared_at = fields.DateTime(data_key="clearedAt", allow_none=True)

    def _charger(self, profile) -> str:
        return profile.charger.charge_point_id


ChargingProfilePage = page_of(ChargingProfile, "ChargingProfilePage")


class ProfileListArgs(PageArgs):
    charge_point_id = fields.String(data_key="chargePointId", validate=validate.Length(min=1, max=48))
    connector_id = fields.Integer(data_key="connectorId", validate=CONNECTOR)
    source = fields.String(validate=validate.OneOf(["operator", "load"]))
    cleared = fields.Boolean(load_default=False, metadata={"description": "include cleared profiles"})


class CompositeArgs(Schema):
    charge_point_id = fields.String(**CHARGER)
    connector_id = fields.Integer(data_key="connectorId", required=True, validate=CONNECTOR)
    duration = fields.Integer(required=True, validate=validate.Range(min=1, max=7 * 24 * 3600))
    charging_rate_unit = fields.String(
        data_key="chargingRateUnit", validate=validate.OneOf(charging_schedules.UNITS)
    )


class CompositeSchedule(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    connector_id = fields.Integer(data_key="connectorId")
    response = fields.Dict(metadata={"description": "the charger's GetCompositeSchedule.conf"})


class Allocation(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    connector_id = fields.Integer(data_key="connectorId")
    transaction_id = fields.Integer(data_key="transactionId")
    allowed = fields.Float()
    state = fields.String(
        metadata={"description": "steered, rejects (counted at its maximum), unanswered, waiting"}
    )
    measured = fields.Float(allow_none=True)
    measured_at = fields.DateTime(data_key="measuredAt", allow_none=True)
    capped_at = fields.Float(data_key="cappedAt", allow_none=True)


class LoadChange(Schema):
    at = fields.DateTime()
    event = fields.String()
    reason = fields.String(allow_none=True)
    limit = fields.Float()
    allowed_sum = fields.Float(data_key="allowedSum")
    allocations = fields.Dict()


class Load(Schema):
    station_id = fields.Integer(data_key="stationId")
    unit = fields.String(allow_none=True, metadata={"description": "A (per phase) or W; null: no limit"})
    limit = fields.Float(allow_none=True)
    min_current_a = fields.Decimal(data_key="minCurrentA", as_string=True, allow_none=True)
    strategy = fields.String()
    allowed_sum = fields.Float(data_key="allowedSum", allow_none=True)
    measured_sum = fields.Float(data_key="measuredSum", allow_none=True)
    allocations = fields.List(fields.Nested(Allocation))
    history = fields.List(fields.Nested(LoadChange))
