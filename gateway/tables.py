"""Tables the gateway adds (migration ``0003_gateway_session_intents``).

``session_intents`` links "this card at this charger" to the workflow that should receive the
StartTransaction that follows: a tap remembered by the gateway (origin ``tap``) or a remote start
recorded by the workflow before it sends RemoteStartTransaction (origin ``remote``). Rows live
until ``expires_at`` (the charger's ConnectionTimeOut) or until a StartTransaction consumes them.

Defined with SQLAlchemy Core on its own metadata so the gateway does not edit ``db/models.py``;
the declarative model may move there later without a schema change.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

metadata = MetaData()

session_intents = Table(
    "session_intents",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("workflow_id", String(255), nullable=False),
    Column("charge_box_id", String(255), nullable=False),
    Column("id_tag", String(20), nullable=False),
    Column("connector_id", Integer, nullable=True),
    Column("origin", String(16), nullable=False),
    # What pre-authorization concluded (the workflow's answer when it came in time).
    Column("auth_status", String(16), nullable=False, server_default="Accepted"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
    Column("transaction_id", BigInteger, nullable=True),
    Index(
        "ix_session_intents_open",
        "charge_box_id",
        "id_tag",
        postgresql_where="consumed_at IS NULL",
    ),
)
