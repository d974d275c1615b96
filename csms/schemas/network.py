"""Network operations: id tags, local authorization lists, users, transactions with their samples."""

from marshmallow import Schema, fields, validate

from csms.models import IdTagStatus, LocalListPolicy, Role
from csms.schemas.cms import TransactionRow
from csms.schemas.common import ID, page_of

TAG = validate.Regexp(r"^[\x21-\x7e]{1,20}$", error="1 to 20 printable ASCII characters")
TAG_STATUSES = validate.OneOf([s.value for s in IdTagStatus])


class IdTag(Schema):
    id_tag = fields.String(data_key="idTag", required=True, validate=TAG)
    status = fields.String(load_default=IdTagStatus.ACCEPTED.value, validate=TAG_STATUSES)
    expiry_date = fields.AwareDateTime(data_key="expiryDate", allow_none=True)
    parent_id_tag = fields.String(data_key="parentIdTag", allow_none=True, validate=TAG)
    user_id = fields.Integer(data_key="ownerId", allow_none=True, validate=ID)
    note = fields.String(allow_none=True, validate=validate.Length(max=255))
    updated_at = fields.DateTime(data_key="updatedAt", dump_only=True)


class IdTagPatch(Schema):
    status = fields.String(validate=TAG_STATUSES)
    expiry_date = fields.AwareDateTime(data_key="expiryDate", allow_none=True)
    parent_id_tag = fields.String(data_key="parentIdTag", allow_none=True, validate=TAG)
    user_id = fields.Integer(data_key="ownerId", allow_none=True, validate=ID)
    note = fields.String(allow_none=True, validate=validate.Length(max=255))


class IdTagListArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))
    q = fields.String(validate=validate.Length(max=100), metadata={"description": "idTag or note contains"})
    status = fields.String(validate=TAG_STATUSES)
    parent_id_tag = fields.String(
        data_key="parentIdTag", validate=TAG, metadata={"description": "members of"}
    )
    owner_id = fields.Integer(data_key="ownerId", validate=ID)


IdTagPage = page_of(IdTag, "IdTagPage")


class LocalListEntry(Schema):
    id_tag = fields.String(data_key="idTag")
    id_tag_info = fields.Dict(data_key="idTagInfo", metadata={"description": "as sent (OCPP IdTagInfo)"})


class LocalList(Schema):
    charge_point_id = fields.String(data_key="chargePointId", attribute="charge_point")
    policy = fields.String(metadata={"description": "none, all (every tag) or parent (one group)"})
    parent_id_tag = fields.String(data_key="parentIdTag", allow_none=True)
    supported = fields.Boolean(
        allow_none=True, metadata={"description": "has LocalAuthListManagement; null until it says"}
    )
    version = fields.Integer(metadata={"description": "the version the CSMS last sent"})
    charger_version = fields.Integer(
        data_key="chargerVersion", allow_none=True, metadata={"description": "the version it confirmed"}
    )
    in_sync = fields.Function(
        lambda row: bool(row.supported) and not row.full_needed and row.charger_version == row.version,
        data_key="inSync",
    )
    entries = fields.Function(
        lambda row: [
            {"idTag": entry["idTag"], "idTagInfo": entry.get("idTagInfo")} for entry in row.entries or []
        ],
        metadata={"description": "the list the charger should hold"},
    )
    last_sync_at = fields.DateTime(data_key="lastSyncAt", allow_none=True)
    last_sync_outcome = fields.String(
        data_key="lastSyncOutcome",
        allow_none=True,
        metadata={"description": "Accepted, Failed, VersionMismatch, NotSupported or failed (error)"},
    )


class LocalListPatch(Schema):
    policy = fields.String(required=True, validate=validate.OneOf([p.value for p in LocalListPolicy]))
    parent_id_tag = fields.String(data_key="parentIdTag", allow_none=True, validate=TAG)


class Sample(Schema):
    sampled_at = fields.DateTime(data_key="timestamp")
    connector_id = fields.Integer(data_key="connectorId")
    measurand = fields.String()
    phase = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    context = fields.String(allow_none=True)
    unit = fields.String(metadata={"description": "Wh for energy and W for power, whatever was sent"})
    value = fields.Decimal(as_string=True)
    raw_value = fields.String(data_key="rawValue")
    raw_unit = fields.String(data_key="rawUnit", allow_none=True)


SamplePage = page_of(Sample, "SamplePage")


class TransactionDetail(TransactionRow):
    samples = fields.Nested(SamplePage)


class SampleArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=500, validate=validate.Range(min=1, max=5000))


class User(Schema):
    id = fields.Integer()
    email = fields.String()
    role = fields.String()
    disabled = fields.Function(lambda user: user.disabled_at is not None)
    disabled_at = fields.DateTime(data_key="disabledAt", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    id_tags = fields.Function(lambda user: sorted(tag.id_tag for tag in user.id_tags), data_key="idTags")


class UserPatch(Schema):
    role = fields.String(validate=validate.OneOf([r.value for r in Role]))
    disabled = fields.Boolean()


class UserListArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))
    q = fields.String(validate=validate.Length(max=100), metadata={"description": "email contains"})
    role = fields.String(validate=validate.OneOf([r.value for r in Role]))
    disabled = fields.Boolean()


UserPage = page_of(User, "UserPage")
