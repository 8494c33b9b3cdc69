"""charging_sessions: an index in the operators' list order (newest start first, never started
last, ties by workflow id), so a page of ``GET /api/v1/sessions`` (and its cursor) is an index
range instead of a sort of every session.

Revision ID: 0016_operator_views
Revises: 0011_api_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_operator_views"
down_revision = "0011_api_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_charging_sessions_started_at",
        "charging_sessions",
        [sa.text("started_at DESC NULLS LAST"), "workflow_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_charging_sessions_started_at", table_name="charging_sessions")
