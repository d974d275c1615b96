"""Property-based testing of the whole REST API from its own OpenAPI document (Schemathesis): no
generated request, valid or not, may produce a server error (5xx)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from csms import create_app
from csms.api.login_limiter import LocalLoginLimiter
from csms.extensions import db
from csms.services import chargers, tokens, users


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, sqlite_template):
    folder = tmp_path_factory.mktemp("fuzz")
    database = folder / "csms.sqlite3"
    database.write_bytes(sqlite_template.read_bytes())
    app = create_app({"DATABASE_URL": f"sqlite:///{database}", "INSTANCE_PATH": str(folder), "TESTING": True})
    with app.app_context():
        operator = users.create_user("fuzz-op@example.test", "password-123", role="operator")
        customer = users.create_user("fuzz-cu@example.test", "password-123", id_tag="FUZZ-TAG")
        chargers.register("FUZZ-CP", "fuzz-key-0123456789")
        secret = app.config["SECRET_KEY"]
        from datetime import timedelta

        app.config["FUZZ_TOKENS"] = {
            "operator": tokens.issue(tokens.Identity(operator.id, "operator"), secret, timedelta(hours=1)),
            "customer": tokens.issue(tokens.Identity(customer.id, "customer"), secret, timedelta(hours=1)),
        }
        db.session.remove()
    return app


def test_no_server_errors(fuzz_app):
    """Every operation, with generated valid and invalid requests (authenticated for its role)."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:
        _exercise(fuzz_app, operation)


def _exercise(app, operation) -> None:
    role = "customer" if operation.path.startswith("/api/user") else "operator"
    headers = {"Authorization": f"Bearer {app.config['FUZZ_TOKENS'][role]}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case):
        app.extensions["login_limiter"] = LocalLoginLimiter()
        with app.app_context():
            response = case.call(headers=headers)
            db.session.remove()
        case.validate_response(response, checks=[not_a_server_error])

    exercise()
