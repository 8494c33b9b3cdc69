"""Migrations are the only way the schema changes: after `upgrade head` the database matches the
models exactly, and there is a single head."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

import db.billing_models
import db.firmware_models
import db.idle_fee_models
import db.ocpp201_models
import db.operation_models
import db.ratelimits
import db.reservation_models
import db.steve_models
import db.webhook_models  # noqa: F401  (registers the operations and webhook tables)
from config.settings import sqlalchemy_url
from db import identity_models  # noqa: F401  (registers scan_arms)
from db.load_models import SiteLoadLimit  # noqa: F401  (registers the load tables)
from db.local_list_models import ChargerLocalList  # noqa: F401  (registers the table)
from db.migrate import MIGRATIONS_DIR
from db.models import Base


def test_single_migration_head() -> None:
    assert len(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()) == 1


def test_models_match_migrated_schema(pg_url: str) -> None:
    engine = create_engine(sqlalchemy_url(pg_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
