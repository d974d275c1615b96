"""charge point security profile: 0 (no Basic auth, legacy chargers), 1 (Basic auth, the default
and what every existing charger had), 2 (Basic auth over TLS)

Reviewed by hand: the server default gives existing rows profile 1, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 04:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('charge_points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('security_profile', sa.SmallInteger(), server_default='1', nullable=False))
        batch_op.create_check_constraint(op.f('ck_charge_points_security_profile'), 'security_profile IN (0, 1, 2)')


def downgrade():
    with op.batch_alter_table('charge_points', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_charge_points_security_profile'), type_='check')
        batch_op.drop_column('security_profile')
