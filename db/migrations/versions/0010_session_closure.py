"""Session closure: transactions the platform closed, session flags and frozen owners, and the
tariff's minimums for the per-session fee

- ``transactions.closed_at`` / ``closed_reason``: the platform closed a transaction the charger
  forgot (or an operator force-closed it) without a StopTransaction; ``stopped_at`` stays NULL so
  a late StopTransaction is still journaled and compensated.
- ``transactions.owner_user_id``: the card's owner when the transaction started.
- ``charging_sessions.flags`` (added by ``0008_poison_flags``) now also carries closures and
  refusals.
- ``tariffs.session_fee_min_energy_wh`` / ``session_fee_min_duration_s``: below either, no
  per-session fee (default: a session that delivered no energy pays no fee).
- Sessions without an owner get the card's current holder once, here; from now on the owner is
  frozen at start and never follows the card.

Revision ID: 0010_session_closure
Revises: 0006_session_lago_invoice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_session_closure"
down_revision = "0009_charger_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("closed_at", sa.DateTime(timezone=True)))
    op.add_column("transactions", sa.Column("closed_reason", sa.String(length=32)))
    op.add_column("transactions", sa.Column("owner_user_id", sa.String(length=64)))
    op.add_column(
        "tariffs",
        sa.Column(
            "session_fee_min_energy_wh", sa.Integer(), server_default=sa.text("1"), nullable=False
        ),
    )
    op.add_column(
        "tariffs",
        sa.Column(
            "session_fee_min_duration_s", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.create_check_constraint(
        "ck_tariffs_session_fee_minimums_non_negative",
        "tariffs",
        "session_fee_min_energy_wh >= 0 AND session_fee_min_duration_s >= 0",
    )
    op.execute(
        """
        UPDATE charging_sessions cs SET user_id = m.user_id
        FROM user_mappings m
        WHERE cs.user_id IS NULL AND m.id_tag = cs.id_tag AND m.is_active
        """
    )


def downgrade() -> None:
    op.drop_constraint("ck_tariffs_session_fee_minimums_non_negative", "tariffs", type_="check")
    op.drop_column("tariffs", "session_fee_min_duration_s")
    op.drop_column("tariffs", "session_fee_min_energy_wh")
    op.drop_column("transactions", "owner_user_id")
    op.drop_column("transactions", "closed_reason")
    op.drop_column("transactions", "closed_at")
