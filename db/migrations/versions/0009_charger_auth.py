"""chargers.allow_unauthenticated: the operator's explicit exemption from charger credentials

Revision ID: 0009_charger_auth
Revises: 0006_session_lago_invoice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_charger_auth"
down_revision = "0008_poison_flags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing passwordless chargers become refused outside dev until an operator either gives
    # them a password or sets this flag: failing closed is the point of the migration.
    op.add_column(
        "chargers",
        sa.Column(
            "allow_unauthenticated", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )


def downgrade() -> None:
    op.drop_column("chargers", "allow_unauthenticated")
