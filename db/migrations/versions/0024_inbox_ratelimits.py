"""Inboxes and shared rate limits.

``notifications`` gets an audience (a driver's inbox or the operators' shared one), the driver's
BetterAuth ``user_id`` and ``archived_at``; ``notification_marks`` holds each operator's read and
archive marks on the shared inbox. Existing rows: ``user_public_id = 'operators'`` become the
operators' inbox; the others are matched to their driver through ``user_mappings`` (public id or
Lago customer id). A row whose driver cannot be found keeps ``user_id`` NULL and shows nowhere.

``api_rate_limits`` (UNLOGGED: a crash may forget a few seconds of counting, which is fine for a
rate limit and saves the WAL) holds one GCRA "theoretical arrival time" per route family and
client key, shared by every API process (docs/rate-limits.md).

Revision ID: 0024_inbox_ratelimits
Revises: 0020_reservations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_inbox_ratelimits"
down_revision = "0020_reservations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column("audience", sa.String(length=16), server_default="user", nullable=False),
    )
    op.add_column("notifications", sa.Column("user_id", sa.String(length=64), nullable=True))
    op.add_column(
        "notifications", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.alter_column("notifications", "user_public_id", nullable=True)
    op.execute("UPDATE notifications SET audience = 'operators' WHERE user_public_id = 'operators'")
    op.execute(
        """
        UPDATE notifications AS n SET user_id = (
            SELECT m.user_id FROM user_mappings AS m
            WHERE m.public_id = n.user_public_id OR m.lago_customer_external_id = n.user_public_id
            ORDER BY m.is_active DESC, m.id DESC
            LIMIT 1
        )
        WHERE n.audience = 'user'
        """
    )
    op.create_check_constraint(
        "audience", "notifications", "audience IN ('user', 'operators')"
    )
    op.create_check_constraint(
        "operators_have_no_user", "notifications", "audience = 'user' OR user_id IS NULL"
    )
    op.drop_index("ix_notifications_user_public_id", table_name="notifications")
    op.create_index("ix_notifications_user_id", "notifications", ["user_id", "id"])
    op.create_index("ix_notifications_audience", "notifications", ["audience", "id"])
    op.create_table(
        "notification_marks",
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_marks_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notification_id", "user_id", name=op.f("pk_notification_marks")),
    )
    op.create_index(
        "ix_notification_marks_user_id", "notification_marks", ["user_id", "notification_id"]
    )
    op.create_table(
        "api_rate_limits",
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("tat_epoch_s", sa.Float(precision=53), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("family", "key", name=op.f("pk_api_rate_limits")),
        prefixes=["UNLOGGED"],
    )
    op.create_index("ix_api_rate_limits_tat_epoch_s", "api_rate_limits", ["tat_epoch_s"])


def downgrade() -> None:
    op.drop_table("api_rate_limits")
    op.drop_table("notification_marks")
    op.drop_index("ix_notifications_audience", table_name="notifications")
    op.drop_index("ix_notifications_user_id", table_name="notifications")
    op.create_index(
        "ix_notifications_user_public_id", "notifications", ["user_public_id", "created_at"]
    )
    op.drop_constraint(
        op.f("ck_notifications_operators_have_no_user"), "notifications", type_="check"
    )
    op.drop_constraint(op.f("ck_notifications_audience"), "notifications", type_="check")
    op.execute(
        "UPDATE notifications SET user_public_id = COALESCE(user_public_id, "
        "CASE WHEN audience = 'operators' THEN 'operators' ELSE user_id END)"
    )
    op.alter_column("notifications", "user_public_id", nullable=False)
    op.drop_column("notifications", "archived_at")
    op.drop_column("notifications", "user_id")
    op.drop_column("notifications", "audience")
