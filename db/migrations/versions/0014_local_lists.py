"""charger_local_lists: each charger's acknowledged local list, support and pending syncs

Revision ID: 0014_local_lists
Revises: 0013_operations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_local_lists"
down_revision = "0013_operations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charger_local_lists",
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("supported", sa.Boolean(), nullable=True),
        sa.Column("unsupported_reason", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("max_length", sa.Integer(), nullable=True),
        sa.Column("send_max_length", sa.Integer(), nullable=True),
        sa.Column("config_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("list_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "entries",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("entries_digest", sa.String(length=64), nullable=True),
        sa.Column("sync_requested", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("sync_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("full_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "clear_cache_requested", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "clear_cache_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("last_sync_status", sa.String(length=32), nullable=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_error", sa.Text(), nullable=True),
        sa.Column("last_clear_cache_status", sa.String(length=32), nullable=True),
        sa.Column("last_clear_cache_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["charge_box_id"],
            ["chargers.charge_box_id"],
            name=op.f("fk_charger_local_lists_charge_box_id_chargers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_box_id", name=op.f("pk_charger_local_lists")),
    )


def downgrade() -> None:
    op.drop_table("charger_local_lists")
