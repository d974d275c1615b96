"""Errors the business rules raise. REST turns them into the JSON envelope, the CLI into a message
and a non-zero exit; each carries a stable machine-readable `code`."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class InvalidInput(ServiceError):
    status = 422
    code = "invalid_input"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class BadGateway(ServiceError):
    status = 502
    code = "bad_gateway"


class GatewayTimeout(ServiceError):
    status = 504
    code = "gateway_timeout"
