"""The migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

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
