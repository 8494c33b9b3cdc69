"""reservations: a driver's hold on a connector, never overlapping another live one.

Revision ID: 0020_reservations
Revises: 0019_driver
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020_reservations"
down_revision = "0019_driver"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # btree_gist: "=" on text/integer inside a GiST exclusion constraint.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(sa.schema.CreateSequence(sa.Sequence("reservation_ocpp_id_seq", start=1)))
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=True),
        sa.Column("any_connector", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("id_tag", sa.String(length=20), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "ocpp_reservation_id",
            sa.Integer(),
            server_default=sa.text("nextval('reservation_ocpp_id_seq')"),
            nullable=False,
        ),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("session_workflow_id", sa.String(length=255), nullable=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("sent_to_charger", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("cancelled_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_reservations_window_positive")),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'used', 'cancelled', 'failed', 'expired')",
            name=op.f("ck_reservations_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["charge_box_id"],
            ["chargers.charge_box_id"],
            name=op.f("fk_reservations_charge_box_id_chargers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
        postgresql.ExcludeConstraint(
            (sa.text("charge_box_id"), "="),
            (sa.text("connector_id"), "="),
            (sa.text("tstzrange(starts_at, ends_at)"), "&&"),
            name="ex_reservations_no_overlap",
            using="gist",
            where=sa.text("status IN ('pending', 'confirmed')"),
        ),
    )
    op.create_index("uq_reservations_ocpp_id", "reservations", ["ocpp_reservation_id"], unique=True)
    op.create_index("ix_reservations_user", "reservations", ["user_id", "starts_at"])
    op.create_index("ix_reservations_charger", "reservations", ["charge_box_id", "starts_at"])
    op.create_index("ix_reservations_id_tag", "reservations", ["id_tag"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.execute("DROP SEQUENCE IF EXISTS reservation_ocpp_id_seq")
