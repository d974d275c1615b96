"""money: payments at a provider, receipts and their counter, every transaction's tariff snapshot
and bill, open balances and account policies, operator adjustments in the ledger (csms.models.money)

Reviewed by hand: server defaults for the new NOT NULL columns (existing rows), the CHECK
constraints autogenerate does not see (ledger kinds, account policy, open balance), `sa.Text`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 04:05:12.956377

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('topup', 'hold', 'capture', 'refund')"
NEW_KINDS = (
    "kind IN ('topup', 'hold', 'capture', 'refund', 'credit', 'debit', 'charge', 'open_balance', 'reversal')"
)


def upgrade():
    op.create_table('receipt_counters',
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('series', name=op.f('pk_receipt_counters'))
    )
    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('provider_reference', sa.String(length=128), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('wallet_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('refunded_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('failure_reason', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'succeeded', 'failed', 'refunded')", name=op.f('ck_payments_state')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payments_amount_positive')),
    sa.CheckConstraint('refunded_minor >= 0 AND refunded_minor <= amount_minor', name=op.f('ck_payments_refunded_range')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_payments_user_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], name=op.f('fk_payments_wallet_id_wallets'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('provider', 'provider_reference', name=op.f('uq_payments_provider_provider_reference'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_user_id'), ['user_id'], unique=False)

    op.create_table('receipts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['charging_sessions.id'], name=op.f('fk_receipts_session_id_charging_sessions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['transaction_id'], ['transactions.id'], name=op.f('fk_receipts_transaction_id_transactions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_receipts_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_receipts')),
    sa.UniqueConstraint('series', 'number', name=op.f('uq_receipts_series_number')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_receipts_transaction_id'))
    )
    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_receipts_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unbilled_minor', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('unbilled_wh', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('refunded_minor', sa.BigInteger(), server_default='0', nullable=False))

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transaction_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('created_by_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ledger_entries_kind'), NEW_KINDS)
        batch_op.create_index(batch_op.f('ix_ledger_entries_transaction_id'), ['transaction_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_created_by_id_users'), 'users', ['created_by_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_ledger_entries_transaction_id_transactions'), 'transactions', ['transaction_id'], ['id'], ondelete='RESTRICT')

    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tariff', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('cost_minor', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('breakdown', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('billing', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('billed_user_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_transactions_billed_user_id_users'), 'users', ['billed_user_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_policy', sa.String(length=16), server_default='prepaid', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_users_account_policy'), "account_policy IN ('prepaid', 'postpaid')")

    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owed_minor', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_wallets_owed_not_negative'), 'owed_minor >= 0')



def downgrade():
    with op.batch_alter_table('wallets', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_wallets_owed_not_negative'), type_='check')
        batch_op.drop_column('owed_minor')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_users_account_policy'), type_='check')
        batch_op.drop_column('account_policy')

    with op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_transactions_billed_user_id_users'), type_='foreignkey')
        batch_op.drop_column('billed_user_id')
        batch_op.drop_column('billing')
        batch_op.drop_column('breakdown')
        batch_op.drop_column('cost_minor')
        batch_op.drop_column('tariff')

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_transaction_id_transactions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_ledger_entries_created_by_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_ledger_entries_transaction_id'))
        batch_op.drop_column('created_by_id')
        batch_op.drop_column('transaction_id')
        batch_op.drop_constraint(batch_op.f('ck_ledger_entries_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_ledger_entries_kind'), OLD_KINDS)

    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.drop_column('refunded_minor')
        batch_op.drop_column('unbilled_wh')
        batch_op.drop_column('unbilled_minor')

    with op.batch_alter_table('receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_receipts_user_id'))

    op.drop_table('receipts')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_user_id'))

    op.drop_table('payments')
    op.drop_table('receipt_counters')
