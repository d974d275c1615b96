"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from csms.extensions import db


def _schema_differences():
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrated_schema_matches_models(any_db_app):
    assert _schema_differences() == []


def test_downgrade_to_base_and_back(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        with db.engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
        assert tables <= {"alembic_version"}
        upgrade()
        assert _schema_differences() == []


@pytest.mark.postgres
def test_transaction_ids_are_int32_on_postgresql(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context(), db.engine.connect() as connection:
        column = next(c for c in inspect(connection).get_columns("transactions") if c["name"] == "id")
        assert str(column["type"]) == "INTEGER"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_pending_csms_requests_move_into_the_command_queue_and_back(make_app, tmp_path, request, backend):
    url = f"sqlite:///{tmp_path / 'requests.sqlite3'}"
    if backend == "postgres":
        url = request.getfixturevalue("postgres_databases")()
    app = make_app(DATABASE_URL=url)
    with app.app_context():
        downgrade(revision="base")
        upgrade(revision="0004")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO command_requests (dedup_key, charge_point_id, action, payload, reason,"
                    " created_at, dispatched_at) VALUES"
                    " ('session:1:remote-stop', 'CP-1', 'RemoteStopTransaction', :payload, 'used up',"
                    "  :created, NULL),"
                    " ('session:2:remote-stop', 'CP-2', 'RemoteStopTransaction', :payload, 'used up',"
                    "  :created, :created)"
                ),
                {"payload": '{"transactionId": 5}', "created": "2026-11-30 10:00:00+00:00"},
            )
        upgrade()
        with db.engine.connect() as connection:
            moved = connection.execute(
                text("SELECT dedup_key, charge_point_id, state, reason, requested_by FROM queued_commands")
            ).all()
        assert [tuple(row) for row in moved] == [("session:1:remote-stop", "CP-1", "queued", "used up", None)]
        downgrade(revision="0004")
        with db.engine.connect() as connection:
            back = connection.execute(text("SELECT dedup_key, dispatched_at FROM command_requests")).all()
        assert [tuple(row) for row in back] == [("session:1:remote-stop", None)]
        upgrade()
