"""chargers.offline_reported_at: one charger.offline event per offline episode.

Revision ID: 0021_live
Revises: 0023_site_load
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_live"
down_revision = "0023_site_load"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "chargers", sa.Column("offline_reported_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("chargers", "offline_reported_at")
