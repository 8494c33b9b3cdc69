"""charging_sessions.lago_invoice_id: the Lago invoice that bills a session

Revision ID: 0006_session_lago_invoice
Revises: 0005_identity_scan_arms
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_session_lago_invoice"
down_revision = "0005_identity_scan_arms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "charging_sessions", sa.Column("lago_invoice_id", sa.String(length=255), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("charging_sessions", "lago_invoice_id")
