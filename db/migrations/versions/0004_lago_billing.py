"""lago billing: session invoices, inbound webhook log, circuit breakers, notifications

Revision ID: 0004_lago_billing
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_lago_billing"
down_revision = "0003"
branch_labels = None
depends_on = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "session_invoices",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("lago_invoice_id", sa.String(length=64), nullable=True),
        sa.Column("invoice_number", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("external_customer_id", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_session_invoices"),
        sa.UniqueConstraint("idempotency_key", name="uq_session_invoices_idempotency_key"),
    )
    op.create_index(
        "uq_session_invoices_workflow_invoice",
        "session_invoices",
        ["workflow_id", "lago_invoice_id"],
        unique=True,
        postgresql_where=sa.text("lago_invoice_id IS NOT NULL"),
    )
    op.create_index("ix_session_invoices_lago_invoice_id", "session_invoices", ["lago_invoice_id"])

    op.create_table(
        "lago_webhook_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("unique_key", sa.String(length=255), nullable=False),
        sa.Column("webhook_type", sa.String(length=100), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("replay_of", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["replay_of"],
            ["lago_webhook_events.id"],
            name="fk_lago_webhook_events_replay_of_lago_webhook_events",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_lago_webhook_events"),
        sa.CheckConstraint(
            "status IN ('pending', 'processed', 'failed', 'skipped')",
            name="ck_lago_webhook_events_status",
        ),
    )
    op.create_index(
        "uq_lago_webhook_events_unique_key",
        "lago_webhook_events",
        ["unique_key"],
        unique=True,
        postgresql_where=sa.text("replay_of IS NULL"),
    )
    op.create_index("ix_lago_webhook_events_created_at", "lago_webhook_events", ["created_at"])

    op.create_table(
        "circuit_breakers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reset_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_circuit_breakers"),
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_public_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("dedupe_key", name="uq_notifications_dedupe_key"),
    )
    op.create_index(
        "ix_notifications_user_public_id", "notifications", ["user_public_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_user_public_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("circuit_breakers")
    op.drop_index("ix_lago_webhook_events_created_at", table_name="lago_webhook_events")
    op.drop_index("uq_lago_webhook_events_unique_key", table_name="lago_webhook_events")
    op.drop_table("lago_webhook_events")
    op.drop_index("ix_session_invoices_lago_invoice_id", table_name="session_invoices")
    op.drop_index("uq_session_invoices_workflow_invoice", table_name="session_invoices")
    op.drop_table("session_invoices")
