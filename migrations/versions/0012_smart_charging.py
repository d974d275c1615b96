"""smart charging: charging profiles, site limits, allocations and their history (csms.models.smart_charging)

Reviewed by hand: the stations' strategy check added (autogenerate misses check constraints on an
existing table); JSON columns spelled as in 0001.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 04:04:39.303672

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('load_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=100), nullable=True),
    sa.Column('limit', sa.Integer(), nullable=False),
    sa.Column('allowed_sum', sa.Integer(), nullable=False),
    sa.Column('allocations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_load_changes_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_load_changes'))
    )
    with op.batch_alter_table('load_changes', schema=None) as batch_op:
        batch_op.create_index('ix_load_changes_station_at', ['station_id', 'id'], unique=False)

    op.create_table('charging_profiles',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('charge_point_id', sa.Integer(), nullable=False),
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=24), nullable=False),
    sa.Column('stack_level', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=True),
    sa.Column('profile', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('response', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.String(length=255), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('ChargePointMaxProfile', 'TxDefaultProfile', 'TxProfile')", name=op.f('ck_charging_profiles_purpose')),
    sa.CheckConstraint("source IN ('operator', 'load')", name=op.f('ck_charging_profiles_source')),
    sa.CheckConstraint("status IN ('pending', 'Accepted', 'Rejected', 'NotSupported', 'failed', 'cleared')", name=op.f('ck_charging_profiles_status')),
    sa.CheckConstraint('connector_id >= 0', name=op.f('ck_charging_profiles_connector_id_not_negative')),
    sa.ForeignKeyConstraint(['charge_point_id'], ['charge_points.id'], name=op.f('fk_charging_profiles_charge_point_id_charge_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_charging_profiles_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_profiles'))
    )
    with op.batch_alter_table('charging_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_charging_profiles_cp_connector', ['charge_point_id', 'connector_id'], unique=False)

    op.create_table('load_allocations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('station_id', sa.Integer(), nullable=False),
    sa.Column('charge_point_id', sa.Integer(), nullable=False),
    sa.Column('connector_id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.BigInteger(), nullable=False),
    sa.Column('allowed', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('measured', sa.Integer(), nullable=True),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('wants', sa.Integer(), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('steered', 'rejects', 'unanswered', 'waiting')", name=op.f('ck_load_allocations_state')),
    sa.ForeignKeyConstraint(['charge_point_id'], ['charge_points.id'], name=op.f('fk_load_allocations_charge_point_id_charge_points'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_load_allocations_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_load_allocations')),
    sa.UniqueConstraint('charge_point_id', 'connector_id', name=op.f('uq_load_allocations_charge_point_id_connector_id'))
    )
    with op.batch_alter_table('load_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_load_allocations_station_id'), ['station_id'], unique=False)

    with op.batch_alter_table('charge_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_current_a', sa.Numeric(precision=5, scale=1), nullable=True))

    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_current_a', sa.Numeric(precision=7, scale=1), nullable=True))
        batch_op.add_column(sa.Column('max_power_w', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('min_current_a', sa.Numeric(precision=5, scale=1), nullable=True))
        batch_op.add_column(sa.Column('strategy', sa.String(length=16), server_default='equal', nullable=False))
        batch_op.create_check_constraint(op.f('ck_stations_strategy'), "strategy IN ('equal', 'priority')")

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('charging_priority', sa.Integer(), server_default='0', nullable=False))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('charging_priority')

    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_stations_strategy'), type_='check')
        batch_op.drop_column('strategy')
        batch_op.drop_column('min_current_a')
        batch_op.drop_column('max_power_w')
        batch_op.drop_column('max_current_a')

    with op.batch_alter_table('charge_points', schema=None) as batch_op:
        batch_op.drop_column('max_current_a')

    with op.batch_alter_table('load_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_load_allocations_station_id'))

    op.drop_table('load_allocations')
    with op.batch_alter_table('charging_profiles', schema=None) as batch_op:
        batch_op.drop_index('ix_charging_profiles_cp_connector')

    op.drop_table('charging_profiles')
    with op.batch_alter_table('load_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_load_changes_station_at')

    op.drop_table('load_changes')
