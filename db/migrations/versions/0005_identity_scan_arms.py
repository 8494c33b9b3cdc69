"""identity: scan_arms (scan-to-login, tap-to-add)

Revision ID: 0005_identity_scan_arms
Revises: 0004_lago_billing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_identity_scan_arms"
down_revision = "0004_lago_billing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_arms",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("claim_sha256", sa.String(length=64), nullable=False),
        sa.Column("armed_by", sa.String(length=255), nullable=False),
        sa.Column("armed_from", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id_tag", sa.String(length=20), nullable=True),
        sa.Column("exchanged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.CheckConstraint("purpose IN ('login', 'register')", name="ck_scan_arms_purpose"),
        sa.PrimaryKeyConstraint("id", name="pk_scan_arms"),
    )
    op.create_index(
        "ix_scan_arms_open",
        "scan_arms",
        ["charge_box_id", "expires_at"],
        unique=False,
        postgresql_where=sa.text("consumed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_scan_arms_open", table_name="scan_arms")
    op.drop_table("scan_arms")
