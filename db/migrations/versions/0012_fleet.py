"""Fleet: sites with address, coordinates and time zone; tariff versions; charger label, password
rotation and decommissioning; refused unknown chargers; the tariff version a session is billed
under

- ``tariff_versions``: the terms of a tariff from ``valid_from`` on, never edited. Each existing
  tariff gets its version 1 here, valid from its creation, with the terms it has now.
- ``chargers.pending_password_hash``: a rotated password the gateway accepts beside the current
  one until the charger first uses it.
- ``pending_chargers``: unknown chargeBoxIds the gateway refused (bounded, see docs/fleet.md).

Revision ID: 0012_fleet
Revises: 0011_api_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_fleet"
down_revision = "0011_api_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sites", sa.Column("address", sa.Text(), nullable=True))
    op.add_column("sites", sa.Column("latitude", sa.Double(), nullable=True))
    op.add_column("sites", sa.Column("longitude", sa.Double(), nullable=True))
    op.add_column(
        "sites",
        sa.Column("timezone", sa.String(length=64), nullable=False, server_default="UTC"),
    )
    op.create_check_constraint(
        "ck_sites_coordinates_pair", "sites", "(latitude IS NULL) = (longitude IS NULL)"
    )
    op.create_check_constraint(
        "ck_sites_coordinates_range",
        "sites",
        "latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180",
    )

    op.create_table(
        "tariff_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tariff_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_per_kwh_minor", sa.Integer(), nullable=False),
        sa.Column("price_per_minute_minor", sa.Integer(), nullable=False),
        sa.Column("price_per_session_minor", sa.Integer(), nullable=False),
        sa.Column("session_fee_min_energy_wh", sa.Integer(), nullable=False),
        sa.Column("session_fee_min_duration_s", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "price_per_kwh_minor >= 0 AND price_per_minute_minor >= 0 "
            "AND price_per_session_minor >= 0 AND session_fee_min_energy_wh >= 0 "
            "AND session_fee_min_duration_s >= 0",
            name=op.f("ck_tariff_versions_terms_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tariff_id"], ["tariffs.id"], name=op.f("fk_tariff_versions_tariff_id_tariffs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tariff_versions")),
        sa.UniqueConstraint("tariff_id", "version", name="uq_tariff_versions_tariff_version"),
    )
    op.execute(
        """
        INSERT INTO tariff_versions (tariff_id, version, valid_from, currency,
            price_per_kwh_minor, price_per_minute_minor, price_per_session_minor,
            session_fee_min_energy_wh, session_fee_min_duration_s, created_by)
        SELECT id, 1, created_at, currency, price_per_kwh_minor, price_per_minute_minor,
            price_per_session_minor, session_fee_min_energy_wh, session_fee_min_duration_s,
            'migration'
        FROM tariffs
        """
    )

    op.add_column("chargers", sa.Column("label", sa.String(length=200), nullable=True))
    op.add_column(
        "chargers", sa.Column("pending_password_hash", sa.String(length=255), nullable=True)
    )
    op.add_column(
        "chargers", sa.Column("password_rotated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "chargers", sa.Column("decommissioned_at", sa.DateTime(timezone=True), nullable=True)
    )

    op.create_table(
        "pending_chargers",
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("last_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("charge_box_id", name=op.f("pk_pending_chargers")),
    )

    op.add_column(
        "charging_sessions", sa.Column("tariff_version_id", sa.Integer(), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_charging_sessions_tariff_version_id_tariff_versions"),
        "charging_sessions",
        "tariff_versions",
        ["tariff_version_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_charging_sessions_tariff_version_id_tariff_versions"),
        "charging_sessions",
        type_="foreignkey",
    )
    op.drop_column("charging_sessions", "tariff_version_id")
    op.drop_table("pending_chargers")
    for column in ("decommissioned_at", "password_rotated_at", "pending_password_hash", "label"):
        op.drop_column("chargers", column)
    op.drop_table("tariff_versions")
    op.drop_constraint("ck_sites_coordinates_range", "sites", type_="check")
    op.drop_constraint("ck_sites_coordinates_pair", "sites", type_="check")
    for column in ("timezone", "longitude", "latitude", "address"):
        op.drop_column("sites", column)
