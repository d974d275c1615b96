"""Payment providers as plugins, and Stripe: a top-up is a pending PaymentIntent, credited once when
Stripe's signed webhook says it succeeded, however often that is delivered; forged or stale events
change nothing; failures and refunds land. Stripe's API is a local stand-in (tests/support)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from csms.config import load
from csms.extensions import db
from csms.models import LedgerEntry, Payment, Wallet
from csms.services import payments, users
from csms.services.errors import Conflict
from csms.services.payments import TopUpRequest, TopUpStarted
from tests.support.stripe_stand_in import StripeStandIn, event, payment_intent, signed

SECRET = "whsec_test_secret_for_the_csms"
API_KEY = "sk_test_standin_key"


@pytest.fixture
def stand_in():
    with StripeStandIn() as running:
        yield running


@pytest.fixture
def stripe_app(make_app, stand_in):
    app = make_app(
        PAYMENT_PROVIDER="stripe",
        STRIPE_API_KEY=API_KEY,
        STRIPE_API_BASE=stand_in.url,
        STRIPE_WEBHOOK_SECRET=SECRET,
    )
    with app.app_context():
        yield app


def customer(app, email="payer@example.test"):
    client = app.test_client()
    user = users.create_user(email, "password-123", id_tag=None)
    token = client.post("/api/auth/login", json={"email": email, "password": "password-123"}).get_json()
    return client, {"Authorization": f"Bearer {token['access_token']}"}, user.id


def deliver(client, document: dict, *, secret: str = SECRET, timestamp: int | None = None, header=True):
    payload = json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    if header:
        headers["Stripe-Signature"] = signed(payload, secret, timestamp)
    return client.post("/api/payments/stripe/webhook", data=payload, headers=headers)


def wallet_of(user_id: int) -> tuple[int, int]:
    db.session.expire_all()
    found = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    return found.available_minor, found.owed_minor


def ledger_of(user_id: int) -> list[tuple[str, int, str | None]]:
    rows = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor, LedgerEntry.reference)
        .join(Wallet)
        .where(Wallet.user_id == user_id)
        .order_by(LedgerEntry.id)
    )
    return [tuple(row) for row in rows]


def test_a_stripe_top_up_is_pending_then_credited_once_however_often_the_webhook_comes(stripe_app, stand_in):
    client, auth, user_id = customer(stripe_app)
    answer = client.post(
        "/api/user/wallet/topup", json={"amount": "25.00", "idempotencyKey": "k-1"}, headers=auth
    )
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["clientSecret"] == "pi_standin_1_secret_standin"
    assert {
        k: body["payment"][k] for k in ("provider", "reference", "state", "amount", "refunded", "currency")
    } == {
        "provider": "stripe",
        "reference": "pi_standin_1",
        "state": "pending",
        "amount": "25.00",
        "refunded": "0.00",
        "currency": "EUR",
    }
    # What the SDK sent is Stripe's documented request: form-encoded, the secret key as bearer.
    [sent] = stand_in.requests
    assert (sent.method, sent.path) == ("POST", "/v1/payment_intents")
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["Idempotency-Key"] == f"topup-{user_id}-k-1"
    assert sent.form == {
        "amount": "2500",
        "currency": "eur",
        "automatic_payment_methods[enabled]": "true",
        "metadata[csms_user_id]": str(user_id),
        "metadata[csms_wallet_id]": str(
            db.session.scalar(select(Wallet.id).where(Wallet.user_id == user_id))
        ),
        "description": "Wallet top-up",
    }
    assert wallet_of(user_id) == (0, 0)

    succeeded = event("payment_intent.succeeded", payment_intent("pi_standin_1", 2500, status="succeeded"))
    outcomes = [deliver(client, succeeded).get_json()["outcome"] for _ in range(3)]
    assert outcomes == ["credited", "already credited", "already credited"]
    assert wallet_of(user_id) == (2500, 0)
    assert ledger_of(user_id) == [("topup", 2500, "stripe:pi_standin_1")]
    assert db.session.scalar(select(Payment.state)) == "succeeded"


def test_forged_stale_or_unsigned_events_change_nothing(stripe_app):
    client, auth, user_id = customer(stripe_app)
    assert client.post("/api/user/wallet/topup", json={"amount": "10.00"}, headers=auth).status_code == 202
    succeeded = event("payment_intent.succeeded", payment_intent("pi_standin_1", 1000, status="succeeded"))
    forged = deliver(client, succeeded, secret="whsec_someone_else")
    stale = deliver(client, succeeded, timestamp=int(time.time()) - 3600)
    unsigned = deliver(client, succeeded, header=False)
    for answer in (forged, stale, unsigned):
        assert answer.status_code == 400
        assert answer.get_json()["error"]["code"] == "invalid_signature"
    for content_type, code in (("application/json", "invalid_json"), ("text/plain", "invalid_event")):
        junk = client.post(
            "/api/payments/stripe/webhook",
            data=b"not json",
            headers={"Stripe-Signature": signed(b"not json", SECRET), "Content-Type": content_type},
        )
        assert (junk.status_code, junk.get_json()["error"]["code"]) == (400, code)
    hollow = deliver(client, {"type": "payment_intent.succeeded", "data": {"object": {}}})
    assert (hollow.status_code, hollow.get_json()["error"]["code"]) == (400, "invalid_event")
    assert wallet_of(user_id) == (0, 0)
    assert ledger_of(user_id) == []
    assert db.session.scalar(select(Payment.state)) == "pending"


def test_a_failed_payment_is_marked_and_a_refund_taken_back_once(stripe_app):
    client, auth, user_id = customer(stripe_app)
    for _ in range(2):
        assert (
            client.post("/api/user/wallet/topup", json={"amount": "30.00"}, headers=auth).status_code == 202
        )
    failed = payment_intent("pi_standin_1", 3000, status="requires_payment_method")
    failed["last_payment_error"] = {"message": "Your card was declined."}
    assert (
        deliver(client, event("payment_intent.payment_failed", failed)).get_json()["outcome"]
        == "marked failed"
    )
    paid = event("payment_intent.succeeded", payment_intent("pi_standin_2", 3000, status="succeeded"))
    assert deliver(client, paid).status_code == 200
    states = dict(db.session.execute(select(Payment.provider_reference, Payment.failure_reason)).all())
    assert states == {"pi_standin_1": "Your card was declined.", "pi_standin_2": None}

    # The customer spends 25.00 of it; Stripe then refunds 10.00, and later the rest (30.00 in all).
    db.session.execute(Wallet.__table__.update().where(Wallet.user_id == user_id).values(available_minor=500))
    db.session.commit()
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 3000,
        "payment_intent": "pi_standin_2",
        "refunded": False,
    }
    for _ in range(2):
        deliver(client, event("charge.refunded", {**charge, "amount_refunded": 1000}))
    assert wallet_of(user_id) == (0, 500)  # 5.00 taken back, 5.00 owed: a wallet never goes negative
    deliver(client, event("charge.refunded", {**charge, "amount_refunded": 3000, "refunded": True}))
    assert wallet_of(user_id) == (0, 2500)
    assert [row[:2] for row in ledger_of(user_id)] == [
        ("topup", 3000),
        ("reversal", 1000),
        ("reversal", 2000),
    ]
    assert (
        db.session.scalar(select(Payment.state).where(Payment.provider_reference == "pi_standin_2"))
        == "refunded"
    )


def test_stripe_refusing_is_a_502_and_nothing_is_pending(stripe_app, stand_in):
    stand_in.refuse_with = {"error": {"type": "card_error", "message": "Your card was declined."}}
    client, auth, _ = customer(stripe_app)
    answer = client.post("/api/user/wallet/topup", json={"amount": "10.00"}, headers=auth)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (502, "payment_provider_error")
    assert db.session.scalar(select(Payment.id)) is None


def test_the_webhook_is_not_served_without_its_secret(app):
    answer = app.test_client().post("/api/payments/stripe/webhook", data=b"{}")
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "not_configured")


class CashDesk:
    """A provider of a third party's own (what the README shows how to write): takes money at once."""

    name = "cash-desk"

    def __init__(self, config):
        self.prefix = config["CURRENCY"]

    def start_top_up(self, request: TopUpRequest) -> TopUpStarted:
        return TopUpStarted(reference=f"cash:{self.prefix}:{request.idempotency_key}", credited=True)


def test_a_provider_is_loaded_by_its_import_path(make_app):
    app = make_app(PAYMENT_PROVIDER="tests.test_payments:CashDesk")
    with app.app_context():
        client, auth, user_id = customer(app)
        answer = client.post(
            "/api/user/wallet/topup", json={"amount": "7.50", "idempotencyKey": "a"}, headers=auth
        )
        assert (answer.status_code, answer.get_json()["available"]) == (200, "7.50")
        assert ledger_of(user_id) == [("topup", 750, "cash:EUR:a")]


@pytest.mark.parametrize("name", ["no.such.module:Provider", "tests.test_payments:Nothing", "nonsense"])
def test_an_unloadable_provider_is_a_clear_409(name):
    with pytest.raises(Conflict) as refused:
        payments.load(name, {})
    assert refused.value.code == "payments_unavailable"


def test_money_settings_are_checked_at_start():
    settings = load(environ={"CSMS_PAYMENT_PROVIDER": "acme.pay:Provider", "CSMS_MIN_BALANCE": "5.00"})
    assert (settings["PAYMENT_PROVIDER"], settings["MIN_BALANCE"]) == ("acme.pay:Provider", 500)
    assert load(environ={"CSMS_MIN_BALANCE": "0"})["MIN_BALANCE"] == 0
    for name, value in (
        ("PAYMENT_PROVIDER", "paypal"),
        ("MIN_BALANCE", "-1"),
        ("SESSION_SAMPLE_INTERVAL", "0"),
    ):
        with pytest.raises(ValueError, match=f"CSMS_{name}"):
            load(environ={f"CSMS_{name}": value})
