"""Firmware files, updates, campaigns, charger firmware/diagnostics states, diagnostics uploads

Revision ID: 0015_firmware
Revises: 0014_local_lists
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015_firmware"
down_revision = "0014_local_lists"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "firmware_files",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_path", sa.String(512), nullable=False),
        sa.Column("uploaded_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "firmware_updates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "charge_box_id",
            sa.String(255),
            sa.ForeignKey("chargers.charge_box_id"),
            nullable=False,
        ),
        sa.Column(
            "firmware_id", sa.String(36), sa.ForeignKey("firmware_files.id"), nullable=False
        ),
        sa.Column("campaign_id", sa.String(36), nullable=True),
        sa.Column("token_sha256", sa.String(64), nullable=True, unique=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retrieve_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("firmware_status", sa.String(32), nullable=True),
        sa.Column("firmware_status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("downloads", sa.Integer(), server_default="0", nullable=False),
        sa.Column("version_before", sa.String(50), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_firmware_updates_charger", "firmware_updates", ["charge_box_id", "created_at"]
    )
    op.create_table(
        "firmware_campaigns",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "firmware_id", sa.String(36), sa.ForeignKey("firmware_files.id"), nullable=False
        ),
        sa.Column("workflow_id", sa.String(255), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("chargers", postgresql.JSONB(), nullable=False),
        sa.Column("wave_size", sa.Integer(), nullable=False),
        sa.Column("pause_s", sa.Integer(), nullable=False),
        sa.Column("max_failures", sa.Integer(), nullable=False),
        sa.Column("wave_deadline_s", sa.Integer(), nullable=False),
        sa.Column("waves_done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("succeeded", postgresql.JSONB(), nullable=False),
        sa.Column("failed", postgresql.JSONB(), nullable=False),
        sa.Column("halted_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "charger_firmware_states",
        sa.Column(
            "charge_box_id",
            sa.String(255),
            sa.ForeignKey("chargers.charge_box_id"),
            primary_key=True,
        ),
        sa.Column("firmware_status", sa.String(32), nullable=True),
        sa.Column("firmware_status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("diagnostics_status", sa.String(32), nullable=True),
        sa.Column("diagnostics_status_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "diagnostics_uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "charge_box_id",
            sa.String(255),
            sa.ForeignKey("chargers.charge_box_id"),
            nullable=False,
        ),
        sa.Column("token_sha256", sa.String(64), nullable=True, unique=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("storage_path", sa.String(512), nullable=True),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_diagnostics_uploads_charger", "diagnostics_uploads", ["charge_box_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_diagnostics_uploads_charger", table_name="diagnostics_uploads")
    op.drop_table("diagnostics_uploads")
    op.drop_table("charger_firmware_states")
    op.drop_table("firmware_campaigns")
    op.drop_index("ix_firmware_updates_charger", table_name="firmware_updates")
    op.drop_table("firmware_updates")
    op.drop_table("firmware_files")
