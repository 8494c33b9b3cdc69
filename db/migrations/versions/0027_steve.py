"""steve_sync_runs: one row per SteVe sync run (docs/steve.md).

Revision ID: 0027_steve
Revises: 0021_live
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0027_steve"
down_revision = "0025_idle_fee"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "steve_sync_runs",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(255), nullable=False, unique=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column(
            "retry_of",
            sa.BigInteger(),
            sa.ForeignKey("steve_sync_runs.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'running'")),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counters", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("log", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("errors", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.CheckConstraint(
            "status IN ('running', 'completed', 'failed')", name="steve_sync_status_known"
        ),
        sa.CheckConstraint(
            "trigger IN ('manual', 'cadence', 'retry')", name="steve_sync_trigger_known"
        ),
    )
    op.create_index(
        "ix_steve_sync_runs_running",
        "steve_sync_runs",
        ["started_at"],
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_steve_sync_runs_running", table_name="steve_sync_runs")
    op.drop_table("steve_sync_runs")
