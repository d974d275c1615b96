"""Property-based testing of the whole REST API from its own OpenAPI document (Schemathesis): no
generated request, valid or not, may produce a server error (5xx). On SQLite and on PostgreSQL, the
database that refuses NUL characters; the generated requests are also poisoned with NUL characters
and wrapped in deep JSON nesting, the input that used to end in 500s (issue #14, finding 6)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from csms import create_app
from csms.api.login_limiter import LocalLoginLimiter
from csms.extensions import db
from csms.request_guard import MAX_JSON_DEPTH
from csms.services import chargers, tokens, users


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_app(request, tmp_path_factory, sqlite_template):
    folder = tmp_path_factory.mktemp("fuzz")
    if request.param == "postgres":
        database_url = request.getfixturevalue("postgres_databases")()  # its own, dropped after the run
    else:
        database = folder / "csms.sqlite3"
        database.write_bytes(sqlite_template.read_bytes())
        database_url = f"sqlite:///{database}"
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(folder),
            "TESTING": True,
            "STRIPE_WEBHOOK_SECRET": "whsec_fuzz",  # the Stripe webhook is served: junk must be a 400
        }
    )
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
    yield app
    with app.app_context():
        db.engine.dispose()


def test_no_server_errors(fuzz_app):
    """Every operation, with generated valid and invalid requests (authenticated for its role)."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    schema.config.generation.update(allow_x00=True, codec="utf-8")  # NUL in any generated string
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25

    for operation in operations:
        _exercise(fuzz_app, operation)


# A poison for a generated case: None (as generated), "nul" (a NUL in its first string value or,
# lacking one, in a query key), or a depth to wrap its JSON body in (either side of the limit).
POISONS = st.one_of(st.none(), st.just("nul"), st.integers(min_value=2, max_value=2 * MAX_JSON_DEPTH))


def _poison(case, poison) -> None:
    if poison == "nul":
        for container in (case.path_parameters, case.query, case.body):
            if isinstance(container, dict):
                key = next((k for k, v in container.items() if isinstance(v, str)), None)
                if key is not None:
                    container[key] += "\x00"
                    return
        case.query = {**(case.query or {}), "x\x00": "1"}
    elif isinstance(poison, int) and case.body is not None:
        for _ in range(poison):
            case.body = [case.body]


def _exercise(app, operation) -> None:
    role = "customer" if operation.path.startswith("/api/user") else "operator"
    headers = {"Authorization": f"Bearer {app.config['FUZZ_TOKENS'][role]}"}

    @given(case=operation.as_strategy(), poison=POISONS)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case, poison):
        app.extensions["login_limiter"] = LocalLoginLimiter()
        _poison(case, poison)
        with app.app_context():
            response = case.call(headers=headers)
            db.session.remove()
        case.validate_response(response, checks=[not_a_server_error])

    exercise()
