"""The REST API: blueprints per resource, one OpenAPI document built from the same schemas."""

from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from flask_smorest import Api
from marshmallow import Schema
from werkzeug.exceptions import HTTPException

from csms.broker import is_embedded
from csms.errors import error_response
from csms.schemas.common import DecimalString, Error, Money


class CsmsApi(Api):
    """flask-smorest with the product's error envelope instead of its own."""

    ERROR_SCHEMA = Error

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        details = data.get("messages") or {}
        if isinstance(details, dict) and len(details) == 1 and next(iter(details)) in ("json", "query"):
            details = next(iter(details.values()))  # webargs nests errors under their location
        if not isinstance(details, dict):
            details = {"body": details}
        code = data.get("code") or (error.name or "error").lower().replace(" ", "_")
        message = data.get("message") or error.description or error.name
        if error.code == 422 and "code" not in data:
            code, message = "validation_error", "the request has invalid fields (see details)"
        response = error_response(error.code or 500, code, message, details)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response


def schema_name(schema: Any) -> str:
    """Component names for the OpenAPI document: a partial (PATCH) schema gets its own name."""
    cls = resolve_schema_cls(schema)
    name = cls.__name__.removesuffix("Schema")
    return f"{name}Patch" if isinstance(schema, Schema) and schema.partial else name


api = CsmsApi(spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)})


def init_app(app: Flask) -> None:
    app.config.update(
        API_TITLE="CSMS",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        # Swagger UI at /api/docs, its assets from npm (swagger-ui-dist) served here, never a CDN.
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/dashboard/static/vendor/swagger-ui/",
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            },
        },
    )
    api.init_app(app)
    api.register_field(Money, "string", None)
    api.register_field(DecimalString, "string", "decimal")
    from csms.api import auth, charger, cms, money, network, operations, smart_charging, user, webhooks
    from csms.api.login_limiter import LocalLoginLimiter, SharedLoginLimiter

    # One process counts in memory; a cluster's nodes count together, in the database.
    limiter = LocalLoginLimiter if is_embedded(app) else SharedLoginLimiter
    app.extensions["login_limiter"] = limiter(address_failures=app.config["LOGIN_FAILURES_PER_ADDRESS"])

    for blueprint in (
        auth.bp,
        user.bp,
        charger.bp,
        cms.bp,
        network.bp,
        money.bp,
        webhooks.bp,
        smart_charging.bp,
    ):
        api.register_blueprint(blueprint)
    for blueprint in (operations.cms_bp, operations.user_bp, operations.files_bp):
        api.register_blueprint(blueprint)
    # Uploads are the largest bodies: anything larger is refused (413) before it is read.
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = app.config["UPLOAD_MAX_BYTES"] + 64 * 1024
