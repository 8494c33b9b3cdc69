"""Per-charger state of the local authorization list (see docs/local-lists.md).

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0014_local_lists.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, false, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class ChargerLocalList(Base):
    """What one charger acknowledged, what it supports, and what is still to do.

    ``list_version`` / ``entries`` are the last list the charger *accepted* (idTag → idTagInfo in
    OCPP's field names); ``entries_digest`` is NULL until a sync has established it.

    Requests are counters, so a request that arrives while a sync runs is never swallowed by it:
    a sync remembers the ``sync_requested`` it started from and sets ``sync_done`` to that value
    when it finishes; pending means ``sync_requested > sync_done``. Same for ClearCache.
    """

    __tablename__ = "charger_local_lists"
    charge_box_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.charge_box_id", ondelete="CASCADE"), primary_key=True
    )
    # NULL: not known yet; False: NotSupported/NotImplemented (skipped until a forced sync).
    supported: Mapped[bool | None] = mapped_column(Boolean)
    unsupported_reason: Mapped[str | None] = mapped_column(String(200))
    # From GetConfiguration (LocalAuthListEnabled, LocalAuthListMaxLength, SendLocalListMaxLength).
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    max_length: Mapped[int | None] = mapped_column(Integer)
    send_max_length: Mapped[int | None] = mapped_column(Integer)
    config_checked_at: Mapped[datetime | None] = mapped_column()
    list_version: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    entries: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    entries_digest: Mapped[str | None] = mapped_column(String(64))
    sync_requested: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    sync_done: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    full_requested: Mapped[bool] = mapped_column(Boolean, server_default=false())
    clear_cache_requested: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    clear_cache_done: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # in_step | sent | offline | failed | timed_out | unsupported
    last_sync_status: Mapped[str | None] = mapped_column(String(32))
    last_sync_at: Mapped[datetime | None] = mapped_column()
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    last_clear_cache_status: Mapped[str | None] = mapped_column(String(32))
    last_clear_cache_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


__all__ = ["ChargerLocalList"]
