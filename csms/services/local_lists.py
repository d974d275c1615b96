"""Local authorization lists (OCPP 1.6 §3.5.3, §4.x Local Auth List Management): the list the CSMS
wants on each charger, kept there with SendLocalList.

The policy of a charger (none, every tag, the tags of one group) says which tags its list holds,
each with the idTagInfo the CSMS would answer (csms.services.authorization.decide). The CSMS keeps
the list it last sent (`entries`) and its `version`; what changed since goes out as a Differential
update with the next version, and a Full update whenever the charger's list is unknown or known to
differ (`full_needed`).

Everything here runs in workers and talks to chargers through the command queue
(csms.services.command_queue): the node holding the charger sends the calls in order, and the
answers come back through the command audit (actors.commands → `on_answer`).

Which chargers have the LocalAuthListManagement profile: each one is asked (GetConfiguration
`SupportedFeatureProfiles`, the key OCPP 1.6 requires of every charger) the first time its list
matters, and again after each boot until it says yes (a firmware update may add the profile). A
charger that answers NotSupported / NotImplemented to a list call is marked unsupported too.

After each boot of a charger whose list matters, GetLocalListVersion: a version other than the one
the CSMS last sent means a Full update. A charger offline when its list changes gets no update
queued (it may come back having lost its list, and updates built on the old one would then
mislead): one GetLocalListVersion waits in its queue instead, sent when it is back, booted or not,
and its answer decides between a Differential and a Full update.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from csms.cluster import presence
from csms.extensions import db
from csms.models import ChargePoint, CommandState, IdTag, LocalList, LocalListPolicy, QueuedCommand
from csms.pipeline import outbox
from csms.pipeline.addresses import SYNC_LOCAL_LISTS
from csms.services import authorization, command_queue
from csms.services.errors import InvalidInput, NotFound

PROFILE = "LocalAuthListManagement"
PROFILES_KEY = "SupportedFeatureProfiles"
POLICIES = tuple(policy.value for policy in LocalListPolicy)
ACTIONS = frozenset({"GetConfiguration", "GetLocalListVersion", "SendLocalList"})
_UNSUPPORTED_ERRORS = frozenset({"NotSupported", "NotImplemented"})


def _now() -> datetime:
    return datetime.now(UTC)


# --- what the CSMS wants --------------------------------------------------------------------------


def wanted_entries(policy: str, parent_id_tag: str | None, now: datetime | None = None) -> list[dict]:
    """The list a charger under `policy` should hold: OCPP AuthorizationData, by idTag."""
    if policy == LocalListPolicy.NONE:
        return []
    parent = IdTag.__table__.alias("parent")
    query = (
        select(IdTag.id_tag, IdTag.status, IdTag.expiry_date, IdTag.parent_id_tag)
        .add_columns(parent.c.status, parent.c.expiry_date, IdTag.user_id)
        .outerjoin(parent, parent.c.id_tag == IdTag.parent_id_tag)
        .order_by(IdTag.id_tag)
    )
    if policy == LocalListPolicy.PARENT:
        query = query.where((IdTag.parent_id_tag == parent_id_tag) | (IdTag.id_tag == parent_id_tag))
    now = now or _now()
    return [
        {"idTag": row[0], "idTagInfo": authorization.decide(authorization.TagRecord(*row[1:]), now).as_ocpp()}
        for row in db.session.execute(query)
    ]


def differential(old: list[dict], new: list[dict]) -> list[dict]:
    """What turns `old` into `new`: changed and added entries, and removed tags without idTagInfo
    (OCPP 1.6 §6.47: a Differential entry without idTagInfo deletes the tag)."""
    before = {entry["idTag"]: entry for entry in old}
    after = {entry["idTag"]: entry for entry in new}
    changes = [entry for tag, entry in after.items() if before.get(tag) != entry]
    changes += [{"idTag": tag} for tag in before if tag not in after]
    return sorted(changes, key=lambda entry: entry["idTag"])


# --- reading and setting the policy (REST) -------------------------------------------------------


def _point(charge_point_id: str) -> ChargePoint:
    point = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if point is None:
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    return point


def view(charge_point_id: str) -> LocalList:
    """A charger's list as the CSMS keeps it (an unsaved default one when it never had a policy)."""
    point = _point(charge_point_id)
    found = db.session.get(LocalList, point.id)
    if found is None:
        found = LocalList(
            charge_point_id=point.id, policy=LocalListPolicy.NONE, version=0, entries=[], full_needed=True
        )
    found.charge_point = charge_point_id  # for the view
    return found


def set_policy(charge_point_id: str, policy: str, parent_id_tag: str | None) -> LocalList:
    """Choose which tags the charger's list holds; a Full update follows (through a worker). Commits."""
    if policy not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}", code="invalid_policy")
    if policy == LocalListPolicy.PARENT:
        if not parent_id_tag:
            raise InvalidInput("the parent policy needs a parentIdTag", code="invalid_parent")
        if db.session.scalar(select(IdTag.id).where(IdTag.id_tag == parent_id_tag)) is None:
            raise InvalidInput(f"no idTag {parent_id_tag!r} to be the group", code="parent_not_found")
    else:
        parent_id_tag = None
    point = _point(charge_point_id)
    found = db.session.get(LocalList, point.id)
    if found is None:
        found = LocalList(charge_point_id=point.id, version=0, entries=[])
        db.session.add(found)
    found.policy, found.parent_id_tag, found.full_needed = policy, parent_id_tag, True
    outbox.add([SYNC_LOCAL_LISTS.message({"chargePoints": [point.id]})])
    db.session.commit()
    return view(charge_point_id)


def request_sync(id_tags: Iterable[str], groups: Iterable[str] | None) -> None:
    """Tags changed (in the caller's transaction): once it commits, a worker brings the lists that
    may hold them up to date: every list of the `all` policy, and those of the groups named (every
    list, when `groups` is None). Nothing when no charger has a list."""
    listed = select(LocalList.charge_point_id).where(LocalList.policy != LocalListPolicy.NONE).limit(1)
    if db.session.scalar(listed) is not None:
        reason = {"idTags": sorted(set(id_tags))[:100], "groups": None if groups is None else sorted(groups)}
        outbox.add([SYNC_LOCAL_LISTS.message(reason)])


# --- keeping chargers in step (workers) ----------------------------------------------------------


def _locked(charge_point_pk: int) -> LocalList | None:
    return db.session.scalar(
        select(LocalList).where(LocalList.charge_point_id == charge_point_pk).with_for_update()
    )


def _charge_point_id(charge_point_pk: int) -> str | None:
    return db.session.scalar(select(ChargePoint.charge_point_id).where(ChargePoint.id == charge_point_pk))


def _connected(charge_point_id: str) -> bool:
    return presence.where(db.session, charge_point_id) is not None


def _ask(charge_point_id: str, action: str, payload: dict, key: str | None = None) -> None:
    """Queue a call for the charger; `key` makes asking again for the same reason queue nothing."""
    digest = hashlib.sha256(f"{charge_point_id}:{key or uuid.uuid4()}:{action}".encode()).hexdigest()
    command_queue.request(f"local-list:{digest[:40]}", charge_point_id, action, payload, "local list")


def sync(charge_point_pk: int, wanted: Callable[[str, str | None], list[dict]] | None = None) -> str | None:
    """Queue the update that brings the charger's list to what its policy wants (Differential, or
    Full when needed); the caller commits. Returns the update type, or None when nothing is sent:
    the list is already right, the charger lacks the profile, or it is offline (a version check
    waits for its return)."""
    found = _locked(charge_point_pk)
    if found is None or not found.supported:
        return None
    charge_point_id = _charge_point_id(charge_point_pk)
    if charge_point_id is None:
        return None
    entries = (wanted or wanted_entries)(found.policy, found.parent_id_tag)
    if not found.full_needed and entries == found.entries:
        return None
    if not _connected(charge_point_id):
        _check_on_return(charge_point_id)
        return None
    version = max(found.version, found.charger_version or 0) + 1
    if found.full_needed:
        update_type, changes = "Full", entries
    else:
        update_type, changes = "Differential", differential(found.entries, entries)
    payload = {"listVersion": version, "updateType": update_type, "localAuthorizationList": changes}
    _ask(charge_point_id, "SendLocalList", payload)
    found.version, found.entries, found.full_needed = version, entries, False
    return update_type


def _check_on_return(charge_point_id: str) -> None:
    """The charger is offline and its list out of step: a GetLocalListVersion waits in its queue,
    sent when it is back (booted or not), and its answer brings the list up to date. One per
    absence (keyed by when it was last seen), however many changes it misses."""
    last_seen = db.session.scalar(
        select(ChargePoint.last_seen_at).where(ChargePoint.charge_point_id == charge_point_id)
    )
    _ask(charge_point_id, "GetLocalListVersion", {}, key=f"away since {last_seen}")


def sync_all(groups: list[str] | None = None) -> dict[str, int]:
    """Bring the lists that may hold tags of `groups` (every list, when None) up to date, each in its
    own transaction; the list of one policy is computed once. Returns how many updates of each type."""
    query = select(LocalList.charge_point_id).where(LocalList.supported.is_(True))
    if groups is not None:
        query = query.where(
            (LocalList.policy == LocalListPolicy.ALL)
            | ((LocalList.policy == LocalListPolicy.PARENT) & LocalList.parent_id_tag.in_(groups))
        )
    pks = list(db.session.scalars(query.order_by(LocalList.charge_point_id)))
    db.session.rollback()
    computed: dict[tuple[str, str | None], list[dict]] = {}

    def wanted(policy: str, parent: str | None) -> list[dict]:
        if (policy, parent) not in computed:
            computed[(policy, parent)] = wanted_entries(policy, parent)
        return computed[(policy, parent)]

    sent: dict[str, int] = {"Full": 0, "Differential": 0}
    for pk in pks:
        update_type = sync(pk, wanted)
        db.session.commit()
        if update_type:
            sent[update_type] += 1
    return sent


def begin(charge_point_pks: list[int]) -> None:
    """A policy was set: find out whether the chargers have the profile (asked now, or when they
    are back), or bring their lists up to date."""
    for pk in charge_point_pks:
        found = _locked(pk)
        if found is None:
            continue
        charge_point_id = _charge_point_id(pk)
        if found.supported is None and charge_point_id:
            _ask(charge_point_id, "GetConfiguration", {"key": [PROFILES_KEY]})
        else:
            sync(pk)
        db.session.commit()


def _matters(found: LocalList | None) -> bool:
    return found is not None and (found.policy != LocalListPolicy.NONE or found.version > 0)


def after_boot(charge_point_id: str, boot_key: str) -> None:
    """A charger booted (its BootNotification stored): check its list (GetLocalListVersion), or
    first whether it has the profile. `boot_key` (the boot's message id) makes a redelivered boot
    ask once. The caller commits."""
    found = db.session.scalar(
        select(LocalList)
        .join(ChargePoint, ChargePoint.id == LocalList.charge_point_id)
        .where(ChargePoint.charge_point_id == charge_point_id)
    )
    if not _matters(found):
        return
    if found.supported:
        _ask(charge_point_id, "GetLocalListVersion", {}, key=f"{charge_point_id}:{boot_key}")
    else:
        _ask(
            charge_point_id, "GetConfiguration", {"key": [PROFILES_KEY]}, key=f"{charge_point_id}:{boot_key}"
        )


def on_answer(charge_point_id: str, action: str, request: dict, command: dict, call_id: str) -> None:
    """What a charger answered to a list call (ours, or an operator's), from the command audit:
    learn its profile and list version, and send what follows. The caller commits."""
    found = db.session.scalar(
        select(LocalList)
        .join(ChargePoint, ChargePoint.id == LocalList.charge_point_id)
        .where(ChargePoint.charge_point_id == charge_point_id)
        .with_for_update()
    )
    if found is None:
        return
    answered = command.get("outcome") == "answered"
    response: dict[str, Any] = command.get("response") or {}
    error = command.get("error_code") or ("" if answered else command.get("outcome", "failed"))
    if error in _UNSUPPORTED_ERRORS:
        found.supported = False
        if action == "SendLocalList":
            _outcome(found, error)
        return
    key = f"{charge_point_id}:{call_id}"
    if action == "GetConfiguration" and answered:
        _learn_profiles(found, request, response)
        if found.supported and _matters(found):
            _ask(charge_point_id, "GetLocalListVersion", {}, key=key)
    elif action == "GetLocalListVersion" and answered:
        found.supported = True
        if _update_under_way(charge_point_id) or _synced_since(found, command.get("requested_at")):
            return  # the update's answer tells (or told) the version; this one may predate it
        found.charger_version = response.get("listVersion")
        if found.charger_version != found.version:
            found.full_needed = True  # the charger's list is not the one the CSMS sent last
        sync(found.charge_point_id)
    elif action == "SendLocalList":
        _after_send(found, request, command, response, error, charge_point_id, key)


def _synced_since(found: LocalList, asked: str | None) -> bool:
    """Whether an update of ours was answered after this version check was asked: the workers may
    apply the two answers in either order, and a version read before the update must not undo it
    (it would send a needless Full update)."""
    last = found.last_sync_at
    if not asked or last is None:
        return False
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    return last >= datetime.fromisoformat(asked)


def _update_under_way(charge_point_id: str) -> bool:
    """Whether a SendLocalList of the CSMS's own waits for the charger or awaits its answer."""
    pending = db.session.scalar(
        select(QueuedCommand.id)
        .where(
            QueuedCommand.charge_point_id == charge_point_id,
            QueuedCommand.action == "SendLocalList",
            QueuedCommand.state.in_([CommandState.QUEUED.value, CommandState.SENT.value]),
            QueuedCommand.requested_by.is_(None),
        )
        .limit(1)
    )
    return pending is not None


def _learn_profiles(found: LocalList, request: dict, response: dict) -> None:
    for item in response.get("configurationKey") or []:
        if item.get("key") == PROFILES_KEY:
            profiles = {part.strip() for part in (item.get("value") or "").split(",")}
            found.supported = PROFILE in profiles
            return
    if PROFILES_KEY in (response.get("unknownKey") or []):
        found.supported = False


def _outcome(found: LocalList, outcome: str) -> None:
    found.last_sync_at = _now()
    found.last_sync_outcome = outcome[:64]


def _after_send(
    found: LocalList, request: dict, command: dict, response: dict, error: str, charge_point_id: str, key: str
) -> None:
    version = request.get("listVersion")
    status = response.get("status") if not error else None
    if command.get("requested_by") is not None:  # an operator's own list: the CSMS's is not there now
        found.full_needed = True
        if status == "Accepted":
            found.charger_version = version
        _outcome(found, f"operator update: {status or error}")
        return
    _outcome(found, status or f"failed ({error})")
    if status == "Accepted":
        found.charger_version = version
    elif status == "NotSupported":
        found.supported = False
    elif status == "VersionMismatch":
        # The charger holds a version the CSMS does not know: ask it, and a Full update follows.
        found.full_needed = True
        _ask(charge_point_id, "GetLocalListVersion", {}, key=key)
    else:  # Failed, a CALLERROR, no answer: what the charger holds is unknown until the next update
        found.full_needed = True
