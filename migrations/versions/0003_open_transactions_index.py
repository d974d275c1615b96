"""open transactions index: a connector's open transactions without reading its history

Reviewed by hand: a partial index (only rows in state 'started'), on SQLite and PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:10:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

OPEN = sa.text("state = 'started'")


def upgrade():
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_open', ['charge_point_id', 'connector_id'], unique=False, sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade():
    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_open', sqlite_where=OPEN, postgresql_where=OPEN)
