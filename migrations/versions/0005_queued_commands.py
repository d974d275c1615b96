"""queued commands: one queue for operators' commands to offline chargers and the CSMS's own calls
(csms.models.command_queue), in place of command_requests

Reviewed by hand: the requests command_requests still held undispatched move into the queue (as
`queued`, for seven days, the CSMS's own requests' lifetime); the dispatched ones were only a
record, which the command audit keeps. The downgrade moves the queued ones back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:55:00.000000

"""

import uuid
from datetime import datetime, timedelta, timezone

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CSMS_REQUEST_TTL = timedelta(days=7)


def upgrade():
    queued = op.create_table(
        "queued_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=False),
        sa.Column("charge_point_id", sa.String(length=48), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("dedup_key", sa.String(length=100), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", JSON, nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_description", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'sent', 'answered', 'failed', 'expired', 'cancelled')",
            name=op.f("ck_queued_commands_state"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_queued_commands_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queued_commands")),
        sa.UniqueConstraint("command_id", name=op.f("uq_queued_commands_command_id")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_queued_commands_dedup_key")),
    )
    with op.batch_alter_table("queued_commands", schema=None) as batch_op:
        batch_op.create_index("ix_queued_commands_charger", ["charge_point_id", "state", "id"], unique=False)
        batch_op.create_index("ix_queued_commands_state_expires", ["state", "expires_at"], unique=False)

    connection = op.get_bind()
    old = sa.table(
        "command_requests",
        sa.column("id"),
        sa.column("dedup_key"),
        sa.column("charge_point_id"),
        sa.column("action"),
        sa.column("payload", JSON),
        sa.column("reason"),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("dispatched_at"),
    )
    expires = datetime.now(timezone.utc) + CSMS_REQUEST_TTL
    rows = [
        {
            "command_id": str(uuid.uuid4()),
            "charge_point_id": r.charge_point_id,
            "action": r.action,
            "payload": r.payload,
            "state": "queued",
            "reason": r.reason,
            "dedup_key": r.dedup_key,
            "created_at": r.created_at,
            "expires_at": expires,
        }
        for r in connection.execute(sa.select(old).where(old.c.dispatched_at.is_(None)).order_by(old.c.id))
    ]
    if rows:
        op.bulk_insert(queued, rows)

    with op.batch_alter_table("command_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_command_requests_pending")
    op.drop_table("command_requests")


def downgrade():
    requests = op.create_table(
        "command_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedup_key", sa.String(length=100), nullable=False),
        sa.Column("charge_point_id", sa.String(length=48), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("node_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_requests")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_command_requests_dedup_key")),
    )
    with op.batch_alter_table("command_requests", schema=None) as batch_op:
        batch_op.create_index("ix_command_requests_pending", ["dispatched_at", "id"], unique=False)

    connection = op.get_bind()
    new = sa.table(
        "queued_commands",
        sa.column("id"),
        sa.column("dedup_key"),
        sa.column("charge_point_id"),
        sa.column("action"),
        sa.column("payload", JSON),
        sa.column("reason"),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("state"),
    )
    query = sa.select(new).where(new.c.state == "queued", new.c.dedup_key.is_not(None)).order_by(new.c.id)
    rows = [
        {
            "dedup_key": r.dedup_key,
            "charge_point_id": r.charge_point_id,
            "action": r.action,
            "payload": r.payload,
            "reason": r.reason,
            "created_at": r.created_at,
        }
        for r in connection.execute(query)
    ]
    if rows:
        op.bulk_insert(requests, rows)

    with op.batch_alter_table("queued_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_queued_commands_state_expires")
        batch_op.drop_index("ix_queued_commands_charger")
    op.drop_table("queued_commands")
