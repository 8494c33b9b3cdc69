"""Alembic environment: synchronous psycopg 3 connection, our models' metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import db.billing_models
import db.firmware_models
import db.idle_fee_models
import db.ocpp201_models
import db.operation_models
import db.reservation_models
import db.steve_models
import db.webhook_models  # noqa: F401  (registers the operations and webhook tables)
from db import identity_models  # noqa: F401  (registers scan_arms)
from db.load_models import SiteLoadLimit  # noqa: F401  (registers the load tables)
from db.local_list_models import ChargerLocalList  # noqa: F401  (registers the table)
from db.migrate import MIGRATION_LOCK_KEY
from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Serialize concurrent migrators (several processes starting at once): the second
            # waits here, then finds the schema at head. Released with the transaction.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
