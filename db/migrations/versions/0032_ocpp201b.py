"""OCPP 2.0.1 device model: NotifyReport (after GetBaseReport) stored per charger.

Revision ID: 0032_ocpp201b
Revises: 0026_ocpp201
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0032_ocpp201b"
down_revision = "0027_steve"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocpp201_device_variables",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("component", sa.String(length=50), nullable=False),
        sa.Column("component_instance", sa.String(length=50), server_default="", nullable=False),
        sa.Column("evse_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("connector_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("variable", sa.String(length=50), nullable=False),
        sa.Column("variable_instance", sa.String(length=50), server_default="", nullable=False),
        sa.Column("attribute_type", sa.String(length=16), server_default="Actual", nullable=False),
        sa.Column("value", sa.String(length=2500), nullable=True),
        sa.Column("mutability", sa.String(length=16), nullable=True),
        sa.Column("characteristics", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp201_device_variables")),
        sa.UniqueConstraint(
            "charge_box_id",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
            name="uq_ocpp201_device_variables_identity",
        ),
    )


def downgrade() -> None:
    op.drop_table("ocpp201_device_variables")
