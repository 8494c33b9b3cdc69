"""poison input: charger max power, flagged stops, session flags in the read model

Revision ID: 0008_poison_flags
Revises: 0006_session_lago_invoice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_poison_flags"
down_revision = "0007_scan_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The most power the charger can deliver (W); energy beyond it × elapsed time is not billed.
    op.add_column(
        "chargers",
        sa.Column("max_power_w", sa.Integer(), server_default=sa.text("350000"), nullable=False),
    )
    op.create_check_constraint("max_power_positive", "chargers", "max_power_w > 0")
    # A StopTransaction whose values were not trusted: why, and what the charger sent.
    op.add_column(
        "transactions",
        sa.Column("stop_flags", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "transactions",
        sa.Column("stop_payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "charging_sessions",
        sa.Column(
            "flags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("charging_sessions", "flags")
    op.drop_column("transactions", "stop_payload")
    op.drop_column("transactions", "stop_flags")
    op.drop_constraint("ck_chargers_max_power_positive", "chargers", type_="check")
    op.drop_column("chargers", "max_power_w")
