"""The idle fee: its terms on tariffs and tariff versions, and one line per session.

``tariffs`` and ``tariff_versions`` gain ``idle_grace_minutes`` (free minutes after the stop),
``idle_price_per_minute_minor`` (0: no idle fee) and ``idle_fee_cap_minor`` (NULL: no cap). A
session keeps the version it started under, and with it these terms.

``idle_fees`` holds the idle fee of a stopped session (one row per session, written by the
``IdleFee`` workflow): how long the connector stayed occupied, what that cost, why the count
ended, and the Lago one-off invoice that carries it (``lago_invoice_id``, set once).

Revision ID: 0025_idle_fee
Revises: 0021_live
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_idle_fee"
down_revision = "0026_ocpp201"
branch_labels = None
depends_on = None

_CHECK = (
    "idle_grace_minutes >= 0 AND idle_price_per_minute_minor >= 0 "
    "AND (idle_fee_cap_minor IS NULL OR idle_fee_cap_minor >= 0)"
)


def upgrade() -> None:
    for table in ("tariffs", "tariff_versions"):
        op.add_column(
            table,
            sa.Column("idle_grace_minutes", sa.Integer(), nullable=False, server_default="0"),
        )
        op.add_column(
            table,
            sa.Column(
                "idle_price_per_minute_minor", sa.Integer(), nullable=False, server_default="0"
            ),
        )
        op.add_column(table, sa.Column("idle_fee_cap_minor", sa.Integer(), nullable=True))
        op.create_check_constraint(f"ck_{table}_idle_terms_non_negative", table, _CHECK)

    op.create_table(
        "idle_fees",
        sa.Column("session_workflow_id", sa.String(255), primary_key=True),
        sa.Column("line_id", sa.String(300), nullable=False, unique=True),
        sa.Column("charge_box_id", sa.String(255), nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("tariff_version_id", sa.Integer(), sa.ForeignKey("tariff_versions.id")),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_reason", sa.String(32), nullable=False),
        sa.Column("idle_s", sa.Integer(), nullable=False),
        sa.Column("billed_s", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capped", sa.Boolean(), nullable=False),
        sa.Column("lago_customer_external_id", sa.String(64)),
        sa.Column("lago_invoice_id", sa.String(64)),
        sa.Column("invoice_number", sa.String(64)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "idle_s >= 0 AND billed_s >= 0 AND amount_minor >= 0", name="ck_idle_fees_non_negative"
        ),
    )
    op.create_index(
        "ix_idle_fees_unsent",
        "idle_fees",
        ["created_at"],
        postgresql_where=sa.text("sent_at IS NULL AND amount_minor > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_idle_fees_unsent", table_name="idle_fees")
    op.drop_table("idle_fees")
    for table in ("tariff_versions", "tariffs"):
        op.drop_constraint(f"ck_{table}_idle_terms_non_negative", table, type_="check")
        op.drop_column(table, "idle_fee_cap_minor")
        op.drop_column(table, "idle_price_per_minute_minor")
        op.drop_column(table, "idle_grace_minutes")
