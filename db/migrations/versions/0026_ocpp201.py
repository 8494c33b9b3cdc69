"""OCPP 2.0.1 beside 1.6: the negotiated version per charger, the charger's transaction id,
the 2.0.1 transaction journal, idToken types and the start-button setting.

Revision ID: 0026_ocpp201
Revises: 0021_live
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0026_ocpp201"
down_revision = "0021_live"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chargers", sa.Column("ocpp_version", sa.String(length=16), nullable=True))
    op.add_column(
        "chargers",
        sa.Column("free_vend", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("ev_cards", sa.Column("token_type", sa.String(length=20), nullable=True))
    op.add_column("transactions", sa.Column("ocpp_version", sa.String(length=8), nullable=True))
    op.add_column(
        "transactions", sa.Column("ocpp_transaction_id", sa.String(length=36), nullable=True)
    )
    op.create_index(
        "uq_transactions_ocpp_transaction_id",
        "transactions",
        ["charge_box_id", "ocpp_transaction_id"],
        unique=True,
        postgresql_where="ocpp_transaction_id IS NOT NULL",
    )
    op.create_table(
        "ocpp201_transactions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("ocpp_transaction_id", sa.String(length=36), nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=True),
        sa.Column("connector_id", sa.Integer(), nullable=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("remote_start_id", sa.Integer(), nullable=True),
        sa.Column("id_token", sa.String(length=36), nullable=True),
        sa.Column("id_token_type", sa.String(length=20), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("begin_wh", sa.BigInteger(), nullable=True),
        sa.Column("last_seq_no", sa.Integer(), server_default="-1", nullable=False),
        sa.Column("charging_state", sa.String(length=16), nullable=True),
        sa.Column("stopped_reason", sa.String(length=32), nullable=True),
        sa.Column("offline", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "flags", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp201_transactions")),
        sa.UniqueConstraint(
            "charge_box_id", "ocpp_transaction_id", name="uq_ocpp201_transactions_charger_tx"
        ),
    )
    op.create_index(
        "ix_ocpp201_transactions_transaction_id", "ocpp201_transactions", ["transaction_id"]
    )
    op.create_table(
        "ocpp201_transaction_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("charge_box_id", sa.String(length=255), nullable=False),
        sa.Column("ocpp_transaction_id", sa.String(length=36), nullable=False),
        sa.Column("seq_no", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("trigger_reason", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("offline", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocpp201_transaction_events")),
        sa.UniqueConstraint(
            "charge_box_id",
            "ocpp_transaction_id",
            "seq_no",
            name="uq_ocpp201_transaction_events_seq",
        ),
    )


def downgrade() -> None:
    op.drop_table("ocpp201_transaction_events")
    op.drop_index("ix_ocpp201_transactions_transaction_id", table_name="ocpp201_transactions")
    op.drop_table("ocpp201_transactions")
    op.drop_index("uq_transactions_ocpp_transaction_id", table_name="transactions")
    op.drop_column("transactions", "ocpp_transaction_id")
    op.drop_column("transactions", "ocpp_version")
    op.drop_column("ev_cards", "token_type")
    op.drop_column("chargers", "free_vend")
    op.drop_column("chargers", "ocpp_version")
