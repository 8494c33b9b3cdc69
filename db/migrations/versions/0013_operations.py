"""Remote operations: the operations log, in-flight operation secrets, chargers' configuration

- ``charger_operations``: one row per request to a charger, written before the frame leaves
  (requested → sent → answered | rejected | failed | timed_out | charger_offline).
- ``charger_operation_secrets``: secret fields (ChangeConfiguration AuthorizationKey) kept only
  while their operation is in flight.
- ``charger_configurations``: each charger's last GetConfiguration answer and the previous one.

Revision ID: 0013_operations
Revises: 0012_fleet
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013_operations"
down_revision = "0012_fleet"
branch_labels = None
depends_on = None

Tz = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "charger_operations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=16), server_default="ocpp1.6", nullable=False),
        sa.Column("request", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="requested", nullable=False),
        sa.Column("response", postgresql.JSONB(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", Tz, server_default=sa.func.now(), nullable=False),
        sa.Column("sent_at", Tz, nullable=True),
        sa.Column("finished_at", Tz, nullable=True),
        sa.CheckConstraint(
            "status IN ('requested', 'sent', 'answered', 'rejected', 'failed', 'timed_out', "
            "'charger_offline')",
            name=op.f("ck_charger_operations_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charger_operations")),
    )
    op.create_index(
        "ix_charger_operations_charger_created",
        "charger_operations",
        ["charge_box_id", "created_at"],
    )
    op.create_index("ix_charger_operations_created", "charger_operations", ["created_at"])
    op.create_index(
        "ix_charger_operations_status_created", "charger_operations", ["status", "created_at"]
    )
    op.create_table(
        "charger_operation_secrets",
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("fields", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", Tz, server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["charger_operations.id"],
            name=op.f("fk_charger_operation_secrets_operation_id_charger_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operation_id", name=op.f("pk_charger_operation_secrets")),
    )
    op.create_table(
        "charger_configurations",
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("keys", postgresql.JSONB(), nullable=False),
        sa.Column("unknown_keys", postgresql.JSONB(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("read_at", Tz, nullable=False),
        sa.Column("previous_keys", postgresql.JSONB(), nullable=True),
        sa.Column("previous_read_at", Tz, nullable=True),
        sa.PrimaryKeyConstraint("charge_box_id", name=op.f("pk_charger_configurations")),
    )


def downgrade() -> None:
    op.drop_table("charger_configurations")
    op.drop_table("charger_operation_secrets")
    op.drop_index("ix_charger_operations_status_created", table_name="charger_operations")
    op.drop_index("ix_charger_operations_created", table_name="charger_operations")
    op.drop_index("ix_charger_operations_charger_created", table_name="charger_operations")
    op.drop_table("charger_operations")
