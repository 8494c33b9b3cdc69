"""charging_sessions.created_at (when the session was requested) and an index in the operators'
list order: newest first by start or, for a session that never started, by request; ties by
workflow id. A page of ``GET /api/v1/sessions`` (and its cursor) is an index range instead of a
sort of every session. Rows written before this revision get the time of the migration.

Revision ID: 0016_operator_views
Revises: 0015_firmware
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_operator_views"
down_revision = "0015_firmware"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "charging_sessions",
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index(
        "ix_charging_sessions_listed",
        "charging_sessions",
        [sa.text("COALESCE(started_at, created_at)"), "workflow_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_charging_sessions_listed", table_name="charging_sessions")
    op.drop_column("charging_sessions", "created_at")
