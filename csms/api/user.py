"""The customer's API (paths kept from the system this replaces): wallet, top-up, charging sessions."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask_smorest import Blueprint
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from csms.api.network import samples_page
from csms.api.pagination import paginate
from csms.api.remote import call_charger
from csms.api.security import requires
from csms.broker import is_embedded
from csms.extensions import db
from csms.models import ChargingSession, LedgerEntry, SessionState, Wallet
from csms.schemas.charging import Session, SessionPage, StartCharging, StopCharging, StopResult, TopUp
from csms.schemas.charging import Wallet as WalletSchema
from csms.schemas.common import INT32_MAX, Error, PageArgs
from csms.schemas.money import TopUpPending
from csms.schemas.network import SampleArgs, SamplePage
from csms.services import payments, sessions
from csms.services.errors import Conflict, NotFound, ServiceError

bp = Blueprint("user", __name__, url_prefix="/api/user", description="A customer's wallet and charging")


def _wallet() -> Wallet:
    found = db.session.scalar(select(Wallet).where(Wallet.user_id == g.identity.user_id))
    if found is None:
        raise NotFound("this account has no wallet", code="no_wallet")
    return found


@bp.get("/wallet")
@requires("customer")
@bp.arguments(PageArgs, location="query")
@bp.response(200, WalletSchema)
@bp.alt_response(401, schema=Error)
def get_wallet(args):
    """Balance (available and held) and the ledger, newest first."""
    return _wallet_view(_wallet(), args["page"], args["per_page"])


def _wallet_view(found: Wallet, page_number: int, per_page: int) -> dict:
    ledger = paginate(
        select(LedgerEntry).where(LedgerEntry.wallet_id == found.id),
        LedgerEntry.id.desc(),
        {"page": page_number, "per_page": per_page},
    )
    return {
        "currency": found.currency,
        "available_minor": found.available_minor,
        "held_minor": found.held_minor,
        "owed_minor": found.owed_minor,
        "ledger": ledger["items"],
        "ledger_total": ledger["total"],
    }


@bp.post("/wallet/topup")
@requires("customer")
@bp.arguments(TopUp)
@bp.response(200, WalletSchema, description="credited at once (a provider that takes the money now)")
@bp.alt_response(202, schema=TopUpPending, description="pending: the app finishes the payment")
@bp.alt_response(409, schema=Error, description="no payment provider configured")
@bp.alt_response(502, schema=Error, description="the payment provider refused")
def top_up(body):
    """Add money through the configured payment provider; an idempotencyKey makes a retry safe.
    With a provider that confirms later (Stripe) the answer is 202 with the pending payment and the
    client secret the app pays with; the wallet is credited when the provider confirms."""
    found = _wallet()
    request = payments.TopUpRequest(
        g.identity.user_id, found.id, body["amount"], found.currency, body.get("idempotency_key")
    )
    started, payment = payments.start_top_up(payment_provider(), request)
    if payment is not None:
        body = TopUpPending().dump({"payment": payment, "client_secret": started.client_secret})
        return jsonify(body), 202
    db.session.expire_all()
    return _wallet_view(found, 1, 50)


def payment_provider() -> payments.PaymentProvider:
    """The configured provider, built once per application."""
    provider = current_app.extensions.get("payment_provider")
    if provider is None:
        name = current_app.config["PAYMENT_PROVIDER"] or ("development" if is_embedded(current_app) else None)
        if name is None:
            raise Conflict("no payment provider is configured for top-ups", code="payments_unavailable")
        provider = current_app.extensions["payment_provider"] = payments.load(name, current_app.config)
    return provider


def _own_session(session_id: int) -> ChargingSession:
    session = db.session.get(ChargingSession, session_id) if 0 < session_id <= INT32_MAX else None
    if session is None or session.user_id != g.identity.user_id:
        raise NotFound(f"no session {session_id}", code="session_not_found")
    return session


@bp.post("/charging/start")
@requires("customer")
@bp.arguments(StartCharging)
@bp.response(201, Session)
@bp.alt_response(404, schema=Error, description="unknown charger or connector")
@bp.alt_response(
    409, schema=Error, description="insufficient funds, busy connector, charger offline or rejecting"
)
@bp.alt_response(504, schema=Error, description="the charger did not answer")
def start_charging(body):
    """Hold `amount`, open a session and ask the charger to start (RemoteStartTransaction). If the
    charger refuses, is offline or does not answer, the hold is released and the error says why."""
    session = sessions.open_session(
        g.identity.user_id, body["device_id"], body["connector_id"], body["amount"]
    )
    session_id, id_tag = session.id, session.id_tag
    payload = {"idTag": id_tag, "connectorId": body["connector_id"]}
    try:
        answer = call_charger(body["device_id"], "RemoteStartTransaction", payload, g.identity.user_id)
    except ServiceError as exc:
        sessions.release(session_id, SessionState.FAILED, exc.message)
        raise
    if answer.get("status") != "Accepted":
        sessions.release(session_id, SessionState.REJECTED, "the charger rejected RemoteStartTransaction")
        raise Conflict(
            "the charger rejected the start", code="charger_rejected", details={"chargerResponse": answer}
        )
    # Conditional: the StartTransaction may already have linked the session (state charging).
    db.session.execute(
        update(ChargingSession)
        .where(ChargingSession.id == session_id, ChargingSession.state == SessionState.REQUESTED)
        .values(state=SessionState.ACCEPTED, charger_response=answer)
    )
    db.session.commit()
    return db.session.get(ChargingSession, session_id)


@bp.post("/charging/stop")
@requires("customer")
@bp.arguments(StopCharging)
@bp.response(200, StopResult)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="the session is not charging")
def stop_charging(body):
    """Ask the charger to stop (RemoteStopTransaction); the session is `stopping` until billed."""
    session = _own_session(body["session_id"])
    if session.state not in (SessionState.CHARGING, SessionState.STOPPING) or session.transaction_id is None:
        raise Conflict(f"session {session.id} is {session.state}, not charging", code="not_charging")
    session_id, charge_point_id = session.id, session.charge_point.charge_point_id
    answer = call_charger(
        charge_point_id,
        "RemoteStopTransaction",
        {"transactionId": session.transaction_id},
        g.identity.user_id,
    )
    if answer.get("status") == "Accepted":
        db.session.execute(
            update(ChargingSession)
            .where(ChargingSession.id == session_id, ChargingSession.state == SessionState.CHARGING)
            .values(state=SessionState.STOPPING)
        )
        db.session.commit()
    return {"session": db.session.get(ChargingSession, session_id), "charger_response": answer}


@bp.get("/charging/sessions")
@requires("customer")
@bp.arguments(PageArgs, location="query")
@bp.response(200, SessionPage)
def list_sessions(args):
    """The customer's sessions, newest first, with live energy and running or final cost."""
    query = (
        select(ChargingSession)
        .where(ChargingSession.user_id == g.identity.user_id)
        .options(selectinload(ChargingSession.transaction))  # each shows its bill: one query for all
    )
    return paginate(query, ChargingSession.id.desc(), args)


@bp.get("/charging/sessions/<int:session_id>")
@requires("customer")
@bp.response(200, Session)
@bp.alt_response(404, schema=Error)
def get_session(session_id: int):
    """One of the customer's sessions."""
    return _own_session(session_id)


@bp.get("/charging/sessions/<int:session_id>/samples")
@requires("customer")
@bp.arguments(SampleArgs, location="query")
@bp.response(200, SamplePage)
@bp.alt_response(404, schema=Error, description="not one of the customer's sessions")
def get_session_samples(args, session_id: int):
    """The meter samples of one of the customer's sessions (measurand, phase, unit, context,
    location), oldest first, paged; empty before the charger started the transaction."""
    session = _own_session(session_id)
    if session.transaction_id is None:
        return {"items": [], "total": 0, "page": args["page"], "per_page": args["per_page"]}
    return samples_page(session.transaction_id, args)
