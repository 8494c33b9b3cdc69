"""Drivers: each connector's plug type and maximum power (shown to drivers with availability).

Revision ID: 0019_driver
Revises: 0018_platform_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_driver"
down_revision = "0018_platform_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("connectors", sa.Column("connector_type", sa.String(length=16), nullable=True))
    op.add_column("connectors", sa.Column("max_power_w", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_connectors_connector_max_power_positive"),
        "connectors",
        "max_power_w IS NULL OR max_power_w > 0",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_connectors_connector_max_power_positive"), "connectors", type_="check"
    )
    op.drop_column("connectors", "max_power_w")
    op.drop_column("connectors", "connector_type")
