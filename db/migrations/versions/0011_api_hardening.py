"""lago_webhook_events.body_sha256: deduplicate inbound webhooks on what the signature covers

``X-Lago-Unique-Key`` is not signed: a captured webhook re-sent with a new key used to be stored
and processed again. The digest of the signed body is unique among originals (rows stored before
this revision have none, and never conflict).

Revision ID: 0011_api_hardening
Revises: 0006_session_lago_invoice
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_api_hardening"
down_revision = "0010_session_closure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "lago_webhook_events", sa.Column("body_sha256", sa.String(length=64), nullable=True)
    )
    op.create_index(
        "uq_lago_webhook_events_body_sha256",
        "lago_webhook_events",
        ["body_sha256"],
        unique=True,
        postgresql_where="replay_of IS NULL",
    )


def downgrade() -> None:
    op.drop_index("uq_lago_webhook_events_body_sha256", table_name="lago_webhook_events")
    op.drop_column("lago_webhook_events", "body_sha256")
