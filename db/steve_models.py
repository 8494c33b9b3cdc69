"""SteVe sync runs (docs/steve.md): one row per ``SyncRunWorkflow`` run.

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0027_steve.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class SteveSyncRun(Base):
    """A sync run: ``status`` running → completed | failed; ``counters`` per segment
    (``{"transactions": {"imported": 1, ...}}``), ``log`` one entry per finished segment,
    ``errors`` one entry per failed segment or per item a segment could not repair.
    ``retry_of``: the failed run this one retries (a retry is always a new run)."""

    __tablename__ = "steve_sync_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str | None] = mapped_column(String(255))
    retry_of: Mapped[int | None] = mapped_column(
        ForeignKey("steve_sync_runs.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column()
    counters: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'completed', 'failed')", name="steve_sync_status_known"
        ),
        CheckConstraint(
            "trigger IN ('manual', 'cadence', 'retry')", name="steve_sync_trigger_known"
        ),
        Index("ix_steve_sync_runs_running", "started_at", postgresql_where="status = 'running'"),
    )
