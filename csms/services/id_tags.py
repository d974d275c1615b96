"""Id tags: issued, grouped, blocked, expired, deleted, imported; and every node told.

Each web node answers Authorize and StartTransaction from its own cache of what it knows of a tag
(`csms.services.authorization.IdTagCache`). Every change to an idTag announces itself in its
transaction (csms.cluster.broadcast): every node drops its decision on the tag when, and only if,
the change commits, so a blocked card is refused everywhere at once. A change to a tag that heads a
group (other tags name it as `parent_id_tag`) changes the decision on every member: it announces
`GROUP_CHANGED`, and every node drops every decision.

The same transaction asks for the chargers' local lists to follow (csms.services.local_lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from csms.cluster import broadcast
from csms.extensions import db
from csms.models import IdTag, IdTagStatus, User
from csms.services import local_lists
from csms.services.bounds import NUL
from csms.services.errors import Conflict, InvalidInput, NotFound, ServiceError

CHANGED = "id-tag"  # the announcement every node's IdTagCache follows; key: the idTag
GROUP_CHANGED = "id-tag-group"  # a group's head changed (or many tags did): every decision goes
STATUSES = tuple(status.value for status in IdTagStatus)
EDITABLE = ("status", "expiry_date", "parent_id_tag", "user_id", "note")
_ID_TAG = re.compile(r"^[\x21-\x7e]{1,20}$")  # OCPP IdToken: CiString20, printable
NOTE_MAX = 255
# Past this many tags changed at once, one "drop everything" beats an announcement per tag.
ANNOUNCE_EACH_MAX = 100


def validate_id_tag(id_tag: str) -> str:
    if not isinstance(id_tag, str) or not _ID_TAG.match(id_tag):
        raise InvalidInput("idTag must be 1 to 20 printable ASCII characters", code="invalid_id_tag")
    return id_tag


def announce_changed(id_tag: str) -> None:
    """Every node forgets its decision on `id_tag` once the current transaction commits."""
    broadcast.announce(CHANGED, id_tag)


def announce_tags(tags: list[str], former_groups: Iterable[str | None] = ()) -> None:
    """Announce changed tags (every decision when one heads a group, or when there are many), and
    ask the local lists to follow: the lists of every tag, and of the groups the tags are in, head,
    or left (`former_groups`); all in the caller's transaction."""
    if not tags:
        return
    heads = db.session.scalar(select(IdTag.id).where(IdTag.parent_id_tag.in_(tags)).limit(1))
    if heads is not None or len(tags) > ANNOUNCE_EACH_MAX:
        broadcast.announce(GROUP_CHANGED, str(len(tags)))
    else:
        for tag in tags:
            announce_changed(tag)
    groups = set(tags) | {group for group in former_groups if group}
    if len(tags) <= ANNOUNCE_EACH_MAX:
        groups |= set(
            db.session.scalars(
                select(IdTag.parent_id_tag).where(IdTag.id_tag.in_(tags), IdTag.parent_id_tag.is_not(None))
            )
        )
    local_lists.request_sync(tags, groups if len(tags) <= ANNOUNCE_EACH_MAX else None)


# --- reading --------------------------------------------------------------------------------------


def get(id_tag: str) -> IdTag:
    tag = db.session.scalar(select(IdTag).where(IdTag.id_tag == id_tag)) if _ID_TAG.match(id_tag) else None
    if tag is None:
        raise NotFound(f"no idTag {id_tag!r}", code="id_tag_not_found")
    return tag


def search(
    q: str | None = None,
    status: str | None = None,
    parent_id_tag: str | None = None,
    owner_id: int | None = None,
) -> Select:
    """The query for a list of tags: `q` matches the tag or its note; the others filter exactly."""
    query = select(IdTag)
    if q:
        pattern = f"%{q}%"
        query = query.where(or_(IdTag.id_tag.ilike(pattern), IdTag.note.ilike(pattern)))
    if status:
        query = query.where(IdTag.status == status)
    if parent_id_tag:
        query = query.where(IdTag.parent_id_tag == parent_id_tag)
    if owner_id is not None:
        query = query.where(IdTag.user_id == owner_id)
    return query


# --- changing -------------------------------------------------------------------------------------


def _checked(id_tag: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` (a subset of EDITABLE) checked: InvalidInput or NotFound otherwise."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", code="invalid_input")
    if "status" in fields and fields["status"] not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
    expiry = fields.get("expiry_date")
    if expiry is not None and (not isinstance(expiry, datetime) or expiry.tzinfo is None):
        raise InvalidInput("expiryDate needs a time zone", code="invalid_expiry_date")
    parent = fields.get("parent_id_tag")
    if parent is not None:
        validate_id_tag(parent)
        if parent == id_tag:
            raise InvalidInput("a tag cannot be its own parent", code="invalid_parent")
        if db.session.scalar(select(IdTag.id).where(IdTag.id_tag == parent)) is None:
            raise InvalidInput(f"no idTag {parent!r} to be the parent", code="parent_not_found")
    owner = fields.get("user_id")
    if owner is not None and db.session.get(User, owner) is None:
        raise InvalidInput(f"no user {owner} to own the tag", code="owner_not_found")
    note = fields.get("note")
    if note is not None and (len(note) > NOTE_MAX or NUL in note):
        raise InvalidInput(f"note must be at most {NOTE_MAX} characters, without NUL", code="invalid_note")
    return fields


def create(id_tag: str, **fields: Any) -> IdTag:
    """Issue a tag (Accepted unless `status` says otherwise); commits."""
    validate_id_tag(id_tag)
    _checked(id_tag, fields)
    if db.session.scalar(select(IdTag.id).where(IdTag.id_tag == id_tag)) is not None:
        raise Conflict(f"idTag {id_tag!r} is already issued", code="id_tag_exists")
    tag = IdTag(id_tag=id_tag, **fields)
    db.session.add(tag)
    db.session.flush()
    announce_tags([id_tag])
    _commit_or_conflict(id_tag)
    return tag


def change(id_tag: str, fields: dict[str, Any]) -> IdTag:
    """Set the given fields of an issued tag (None clears an optional one); commits."""
    tag = get(id_tag)
    _checked(id_tag, fields)
    if "status" in fields and fields["status"] is None:
        raise InvalidInput("status cannot be null", code="invalid_status")
    former_group = tag.parent_id_tag
    for name, value in fields.items():
        setattr(tag, name, value)
    announce_tags([id_tag], [former_group])
    db.session.commit()
    return tag


def update(id_tag: str, *, status: str | None = None, expiry_date: datetime | None = None) -> IdTag:
    """Set an issued idTag's status and/or expiry date (aware, UTC); None leaves it; commits."""
    fields = {"status": status, "expiry_date": expiry_date}
    return change(id_tag, {name: value for name, value in fields.items() if value is not None})


def delete(id_tag: str) -> None:
    """Withdraw a tag; one that heads a group is refused while it has members (Conflict)."""
    tag = get(id_tag)
    if db.session.scalar(select(IdTag.id).where(IdTag.parent_id_tag == id_tag).limit(1)) is not None:
        raise Conflict(f"idTag {id_tag!r} heads a group that still has members", code="id_tag_has_members")
    announce_tags([id_tag])
    db.session.delete(tag)
    db.session.commit()


def _commit_or_conflict(id_tag: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:  # the same tag issued concurrently: the unique key decided
        db.session.rollback()
        raise Conflict(f"idTag {id_tag!r} is already issued", code="id_tag_exists") from None


# --- importing ------------------------------------------------------------------------------------

IMPORT_COLUMNS = ("idTag", "status", "expiryDate", "parentIdTag", "ownerId", "note")


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (line, idTag, reason)


def _row_fields(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row's columns as tag fields; an empty cell means "not set" (None)."""
    cell = {name: (row.get(name) or "").strip() for name in IMPORT_COLUMNS}
    fields: dict[str, Any] = {
        "status": cell["status"] or IdTagStatus.ACCEPTED.value,
        "parent_id_tag": cell["parentIdTag"] or None,
        "note": cell["note"] or None,
        "expiry_date": None,
        "user_id": None,
    }
    if cell["expiryDate"]:
        try:
            fields["expiry_date"] = datetime.fromisoformat(cell["expiryDate"])
        except ValueError:
            raise InvalidInput(
                "expiryDate is not an ISO 8601 date-time", code="invalid_expiry_date"
            ) from None
    if cell["ownerId"]:
        if not cell["ownerId"].isdigit() or not 0 < int(cell["ownerId"]) < 2**31:
            raise InvalidInput("ownerId must be a user id", code="owner_not_found")
        fields["user_id"] = int(cell["ownerId"])
    return fields


def import_rows(rows: Iterable[tuple[int, dict[str, str]]]) -> ImportReport:
    """Create or update the tags of `(line, row)` pairs (the CSV's columns, `IMPORT_COLUMNS`) and
    commit once; a bad row is refused with its reason and the others go in. Importing the same rows
    again changes nothing (`unchanged`). Rows without a parent go first, so a file may name a group
    before or after its members."""
    report = ImportReport()
    changed: list[str] = []
    former_groups: list[str | None] = []
    first: dict[str, int] = {}  # idTag -> the line that has it first; a later line is refused
    rows = list(rows)
    for line, row in rows:
        first.setdefault((row.get("idTag") or "").strip(), line)
    has_parent = lambda item: bool((item[1].get("parentIdTag") or "").strip())  # noqa: E731
    for line, row in sorted(rows, key=has_parent):
        id_tag = (row.get("idTag") or "").strip()
        try:
            validate_id_tag(id_tag)
            if first[id_tag] != line:
                raise InvalidInput(f"the idTag is on line {first[id_tag]} already", code="duplicate_row")
            fields = _checked(id_tag, _row_fields(row))
        except ServiceError as exc:
            report.refused.append((line, id_tag, exc.message))
            continue
        tag = db.session.scalar(select(IdTag).where(IdTag.id_tag == id_tag))
        if tag is None:
            db.session.add(IdTag(id_tag=id_tag, **fields))
            db.session.flush()  # a member further down may name it as its parent
            report.created += 1
        elif all(getattr(tag, name) == value for name, value in fields.items()):
            report.unchanged += 1
            continue
        else:
            former_groups.append(tag.parent_id_tag)
            for name, value in fields.items():
                setattr(tag, name, value)
            report.updated += 1
        changed.append(id_tag)
    report.refused.sort()
    announce_tags(changed, former_groups)
    db.session.commit()
    return report
