"""network operations: id tag notes and groups, disabled users, local authorization lists

Written by hand: an id tag's note and the index on its group (parent_id_tag); a user's disabled_at;
the open transactions of an idTag (ConcurrentTx); the local list each charger should hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:30:00.000000

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OPEN = sa.text("state = 'started'")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    with op.batch_alter_table('id_tags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.String(length=255), nullable=True))
        batch_op.create_index('ix_id_tags_parent_id_tag', ['parent_id_tag'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.create_index('ix_transactions_open_id_tag', ['id_tag'], unique=False, sqlite_where=OPEN, postgresql_where=OPEN)

    op.create_table('local_lists',
    sa.Column('charge_point_id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=8), nullable=False),
    sa.Column('parent_id_tag', sa.String(length=20), nullable=True),
    sa.Column('supported', sa.Boolean(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('entries', JSON, nullable=False),
    sa.Column('charger_version', sa.Integer(), nullable=True),
    sa.Column('full_needed', sa.Boolean(), nullable=False),
    sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_outcome', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("policy IN ('none', 'all', 'parent')", name=op.f('ck_local_lists_policy')),
    sa.CheckConstraint("policy <> 'parent' OR parent_id_tag IS NOT NULL", name=op.f('ck_local_lists_parent_named')),
    sa.ForeignKeyConstraint(['charge_point_id'], ['charge_points.id'], name=op.f('fk_local_lists_charge_point_id_charge_points'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('charge_point_id', name=op.f('pk_local_lists'))
    )


def downgrade():
    op.drop_table('local_lists')

    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_transactions_open_id_tag', sqlite_where=OPEN, postgresql_where=OPEN)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')

    with op.batch_alter_table('id_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_id_tags_parent_id_tag')
        batch_op.drop_column('note')
