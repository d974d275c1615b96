"""A local STAND-IN for Stripe's API (no network here): an HTTP server that records what the `stripe`
SDK sends and answers as Stripe documents (https://docs.stripe.com/api/payment_intents/create), and
helpers that sign webhook events the way Stripe does (https://docs.stripe.com/webhooks#verify-manually).
It is not Stripe: it checks the request shape the CSMS sends, nothing of Stripe's own behaviour."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class StripeStandIn:
    """Answers POST /v1/payment_intents with a new PaymentIntent (`pi_standin_<n>`)."""

    requests: list[Recorded] = field(default_factory=list)
    refuse_with: dict | None = None  # a Stripe error body to answer 402 with

    def __enter__(self) -> StripeStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = dict(parse_qsl(body, keep_blank_values=True))
                stand_in.requests.append(Recorded("POST", self.path, dict(self.headers), form))
                if stand_in.refuse_with is not None:
                    self._answer(402, stand_in.refuse_with)
                elif self.path == "/v1/payment_intents":
                    number = len(stand_in.requests)
                    self._answer(200, payment_intent(f"pi_standin_{number}", int(form["amount"]), form))
                else:
                    self._answer(404, {"error": {"type": "invalid_request_error", "message": "stand-in"}})

            def _answer(self, status: int, document: dict) -> None:
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_standin")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def payment_intent(
    intent_id: str, amount: int, form: dict | None = None, status: str = "requires_payment_method"
) -> dict:
    """A PaymentIntent object as Stripe's API reference shows it."""
    form = form or {}
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "automatic_payment_methods": {"enabled": True},
        "client_secret": f"{intent_id}_secret_standin",
        "currency": form.get("currency", "eur"),
        "description": form.get("description"),
        "livemode": False,
        "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        "status": status,
    }


def event(event_type: str, obj: dict, event_id: str = "evt_standin_1") -> dict:
    """An Event object as Stripe delivers it to a webhook endpoint."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def signed(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: t=<unix time>,v1=<HMAC-SHA256 of "t.payload" with the secret>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
