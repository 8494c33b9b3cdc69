"""platform_events: what happened, in commit order, for live streams, webhooks and inboxes.

Revision ID: 0018_platform_events
Revises: 0016_operator_views
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018_platform_events"
down_revision = "0016_operator_views"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column(
            "occurred_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("charge_box_id", sa.String(length=255), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_events")),
    )
    op.create_index("ix_platform_events_user_id", "platform_events", ["user_id", "id"])
    op.create_index(
        "ix_platform_events_charge_box_id", "platform_events", ["charge_box_id", "id"]
    )
    op.create_index("ix_platform_events_site_id", "platform_events", ["site_id", "id"])


def downgrade() -> None:
    op.drop_table("platform_events")
