"""site load management: site_load_limits, charger_load_profiles.

Revision ID: 0023_site_load
Revises: 0022_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_site_load"
down_revision = "0022_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_load_limits",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.Column("site_limit", sa.Integer(), nullable=False),
        sa.Column("phases", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("voltage_v", sa.Integer(), server_default=sa.text("230"), nullable=False),
        sa.Column("min_per_session", sa.Integer(), nullable=False),
        sa.Column("safe_limit", sa.Integer(), nullable=False),
        sa.Column("rounds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_planned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("unit IN ('W', 'A')", name=op.f("ck_site_load_limits_unit_known")),
        sa.CheckConstraint("site_limit > 0", name=op.f("ck_site_load_limits_limit_positive")),
        sa.CheckConstraint("phases IN (1, 3)", name=op.f("ck_site_load_limits_phases_known")),
        sa.CheckConstraint(
            "voltage_v BETWEEN 100 AND 1000", name=op.f("ck_site_load_limits_voltage_range")
        ),
        sa.CheckConstraint(
            "min_per_session >= 0 AND safe_limit >= 0",
            name=op.f("ck_site_load_limits_minimums_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_site_load_limits_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_site_load_limits")),
    )
    op.create_table(
        "charger_load_profiles",
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.Column("planned_limit", sa.Integer(), nullable=True),
        sa.Column("planned_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_limit", sa.Integer(), nullable=True),
        sa.Column("acknowledged_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offered_limit", sa.Integer(), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), server_default=sa.text("'planned'"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["charge_box_id"],
            ["chargers.charge_box_id"],
            name=op.f("fk_charger_load_profiles_charge_box_id_chargers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "charge_box_id", "connector_id", "purpose", name=op.f("pk_charger_load_profiles")
        ),
    )
    op.create_index("ix_charger_load_profiles_site_id", "charger_load_profiles", ["site_id"])


def downgrade() -> None:
    op.drop_table("charger_load_profiles")
    op.drop_table("site_load_limits")
