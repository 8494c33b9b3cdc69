"""identity: charger_scan_secrets (the QR secret that proves presence for scan-to-login)

Revision ID: 0007_scan_secrets
Revises: 0006_session_lago_invoice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_scan_secrets"
down_revision = "0006_session_lago_invoice"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charger_scan_secrets",
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "rotated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("rotated_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_box_id"],
            ["chargers.charge_box_id"],
            name="fk_charger_scan_secrets_charge_box_id_chargers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("charge_box_id", name="pk_charger_scan_secrets"),
    )
    # Arms made before this release were open to anyone; none may outlive the upgrade.
    op.execute("UPDATE scan_arms SET expires_at = now() WHERE consumed_at IS NULL")


def downgrade() -> None:
    op.drop_table("charger_scan_secrets")
