"""No password, hash or key reaches a log line (issue #14, finding 8): SQLAlchemy wrote statement
parameters into its exception messages, so a registration that lost a race logged the new user's
password hash inside the IntegrityError traceback."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from csms.config import normalize_database_url
from csms.extensions import db
from csms.models import User
from csms.services import chargers, users

PASSWORD = "the-secret-password"


def _wait_until_blocked_by(engine, blocker_pid: int, timeout: float = 10.0) -> None:
    """Until a session waits on a lock that `blocker_pid` holds (the registration's INSERT)."""
    deadline = time.monotonic() + timeout
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :pid = ANY(pg_blocking_pids(pid))")
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(query, {"pid": blocker_pid}).scalar()
            connection.rollback()
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("the registration never waited on the competing insert")


@pytest.mark.postgres
def test_a_registration_that_loses_a_race_logs_no_hash(make_app, postgres_url, caplog):
    """The competing account is inserted but not committed: the registration's check sees no such
    email, its INSERT waits on the unique index, and fails once the competitor commits."""
    app = make_app(DATABASE_URL=postgres_url)
    client = app.test_client()
    competitor = create_engine(normalize_database_url(postgres_url))
    answers = []
    try:
        with competitor.connect() as connection:
            competitor_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            connection.execute(
                text(
                    "INSERT INTO users (email, password_hash, role, created_at)"
                    " VALUES (:e, 'x', 'customer', now())"
                ),
                {"e": "race@example.test"},
            )
            registering = threading.Thread(
                target=lambda: answers.append(
                    client.post(
                        "/api/auth/register", json={"email": "race@example.test", "password": PASSWORD}
                    )
                )
            )
            with caplog.at_level(logging.DEBUG):
                registering.start()
                _wait_until_blocked_by(competitor, competitor_pid)
                connection.commit()
                registering.join(timeout=30)
        assert len(answers) == 1 and answers[0].status_code in (409, 500)
        logged = caplog.text + answers[0].get_data(as_text=True)
        assert "scrypt:" not in logged and "pbkdf2:" not in logged and PASSWORD not in logged
    finally:
        competitor.dispose()


def test_integrity_errors_carry_no_parameters(any_db_app):
    users.create_user("first@example.test", PASSWORD)
    duplicate = User(
        email="first@example.test", password_hash="scrypt:32768:8:1$salt$secret-hash", role="customer"
    )
    db.session.add(duplicate)
    with pytest.raises(IntegrityError) as failed:
        db.session.flush()
    db.session.rollback()
    assert "secret-hash" not in str(failed.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(failed.value)


def test_sql_echo_logs_statements_without_their_parameters(make_app, caplog):
    app = make_app(SQL_ECHO=True)
    with app.app_context(), caplog.at_level(logging.INFO, logger="sqlalchemy.engine"):
        users.create_user("echo@example.test", PASSWORD)
        registration = chargers.register("CP-ECHO", "charger-key-0123456789")
        hashes = db.session.execute(
            text("SELECT password_hash FROM users UNION ALL SELECT auth_key_hash FROM charge_points")
        )
        stored = [row[0] for row in hashes]
    assert "INSERT INTO users" in caplog.text
    for secret in (PASSWORD, registration.auth_key, *stored):
        assert secret not in caplog.text
