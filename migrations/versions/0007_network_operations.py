"""network operations: reservations, firmware updates and diagnostics jobs with their files, the
outcomes of maintenance calls, connector availability, and the reservation fee (tariff, ledger)

Reviewed by hand: as generated, plus the reservation fee's server default (existing tariffs get 0)
and its CHECK constraint, which autogenerate does not see.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:04:38.781562

"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "diagnostics_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=True),
        sa.Column("retry_interval", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_diagnostics_requests_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_diagnostics_requests")),
    )
    op.create_table(
        "stored_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('firmware', 'diagnostics')", name=op.f("ck_stored_files_kind")),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_stored_files_uploaded_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_files")),
        sa.UniqueConstraint("token", name=op.f("uq_stored_files_token")),
    )
    op.create_table(
        "charger_operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column(
            "request",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_charger_operations_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_charger_operations_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charger_operations")),
        sa.UniqueConstraint(
            "charge_point_id", "action", name=op.f("uq_charger_operations_charge_point_id_action")
        ),
    )
    op.create_table(
        "diagnostics_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=True),
        sa.Column("upload_token", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("file_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('Pending', 'Accepted', 'NoFile', 'Failed', 'Uploading', 'Uploaded', 'UploadFailed')",
            name=op.f("ck_diagnostics_targets_status"),
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["stored_files.id"],
            name=op.f("fk_diagnostics_targets_file_id_stored_files"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["diagnostics_requests.id"],
            name=op.f("fk_diagnostics_targets_request_id_diagnostics_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_diagnostics_targets")),
        sa.UniqueConstraint("command_id", name=op.f("uq_diagnostics_targets_command_id")),
        sa.UniqueConstraint("upload_token", name=op.f("uq_diagnostics_targets_upload_token")),
    )
    with op.batch_alter_table("diagnostics_targets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_diagnostics_targets_charger_status", ["charge_point_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_diagnostics_targets_request_id"), ["request_id"], unique=False)

    op.create_table(
        "firmware_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=512), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=True),
        sa.Column("retrieve_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=True),
        sa.Column("retry_interval", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["stored_files.id"],
            name=op.f("fk_firmware_updates_file_id_stored_files"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_firmware_updates_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_updates")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.Integer(), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id_tag", sa.String(length=20), nullable=False),
        sa.Column("parent_id_tag", sa.String(length=20), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charger_status", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("fee_outcome", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('requested', 'accepted', 'rejected', 'used', 'expired', 'cancelled')",
            name=op.f("ck_reservations_state"),
        ),
        sa.CheckConstraint("connector_id >= 0", name=op.f("ck_reservations_connector_id_not_negative")),
        sa.CheckConstraint("fee_minor >= 0", name=op.f("ck_reservations_fee_not_negative")),
        sa.ForeignKeyConstraint(
            ["charge_point_id"],
            ["charge_points.id"],
            name=op.f("fk_reservations_charge_point_id_charge_points"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name=op.f("fk_reservations_requested_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reservations_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index(
            "uq_reservations_open_connector",
            ["charge_point_id", "connector_id"],
            unique=True,
            sqlite_where=sa.text("state IN ('requested', 'accepted')"),
            postgresql_where=sa.text("state IN ('requested', 'accepted')"),
        )
        batch_op.create_index("ix_reservations_state_expires", ["state", "expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_reservations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "firmware_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.Integer(), nullable=False),
        sa.Column("charge_point_id", sa.String(length=48), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("command_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("firmware_version", sa.String(length=50), nullable=True),
        sa.CheckConstraint(
            "status IN ('Pending', 'Scheduled', 'Failed', 'Downloading', 'Downloaded', 'DownloadFailed', 'Installing', 'Installed', 'InstallationFailed')",
            name=op.f("ck_firmware_targets_status"),
        ),
        sa.ForeignKeyConstraint(
            ["update_id"],
            ["firmware_updates.id"],
            name=op.f("fk_firmware_targets_update_id_firmware_updates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_targets")),
        sa.UniqueConstraint("command_id", name=op.f("uq_firmware_targets_command_id")),
    )
    with op.batch_alter_table("firmware_targets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_firmware_targets_charger_status", ["charge_point_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_firmware_targets_update_id"), ["update_id"], unique=False)

    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("availability", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("availability_state", sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column("availability_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reservation_id", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_ledger_entries_reservation_id_kind"), ["reservation_id", "kind"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_entries_reservation_id_reservations"),
            "reservations",
            ["reservation_id"],
            ["id"],
            ondelete="RESTRICT",
        )

    with op.batch_alter_table("tariffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reservation_fee", sa.Numeric(precision=12, scale=4), server_default="0", nullable=False
            )
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_tariffs_reservation_fee_not_negative"), "reservation_fee >= 0"
        )


def downgrade():
    with op.batch_alter_table("tariffs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_tariffs_reservation_fee_not_negative"), type_="check")
        batch_op.drop_column("reservation_fee")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_ledger_entries_reservation_id_reservations"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_ledger_entries_reservation_id_kind"), type_="unique")
        batch_op.drop_column("reservation_id")

    with op.batch_alter_table("connectors", schema=None) as batch_op:
        batch_op.drop_column("availability_at")
        batch_op.drop_column("availability_state")
        batch_op.drop_column("availability")

    with op.batch_alter_table("firmware_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_targets_update_id"))
        batch_op.drop_index("ix_firmware_targets_charger_status")

    op.drop_table("firmware_targets")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reservations_user_id"))
        batch_op.drop_index("ix_reservations_state_expires")
        batch_op.drop_index(
            "uq_reservations_open_connector",
            sqlite_where=sa.text("state IN ('requested', 'accepted')"),
            postgresql_where=sa.text("state IN ('requested', 'accepted')"),
        )

    op.drop_table("reservations")
    op.drop_table("firmware_updates")
    with op.batch_alter_table("diagnostics_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_diagnostics_targets_request_id"))
        batch_op.drop_index("ix_diagnostics_targets_charger_status")

    op.drop_table("diagnostics_targets")
    op.drop_table("charger_operations")
    op.drop_table("stored_files")
    op.drop_table("diagnostics_requests")
