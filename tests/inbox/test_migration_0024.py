"""Migration 0024 moves the first version's notifications into the inboxes and back.

A database of its own on the session's server, migrated to 0018, given rows the first version
wrote (an operators' one, a driver's by public id, one by Lago customer id, an orphan), then
upgraded and downgraded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic import command

from config.settings import libpq_url
from db.migrate import alembic_config, upgrade

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def scratch_db(pg_url: str) -> Iterator[str]:
    name = f"polaris_mig_{uuid.uuid4().hex[:10]}"
    server = libpq_url(pg_url)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


FIRST_VERSION_ROWS = """
INSERT INTO ev_cards (id_tag, is_active, blocked, max_concurrent_sessions)
VALUES ('MIG1', true, false, 1), ('MIG2', true, false, 1);
INSERT INTO user_mappings (user_id, public_id, id_tag, lago_customer_external_id, billing_mode,
                           is_active)
VALUES ('user-a', 'PUBA0001', 'MIG1', NULL, 'usage', true),
       ('user-b', 'PUBB0001', 'MIG2', 'cust-b', 'usage', true);
INSERT INTO notifications (user_public_id, kind, dedupe_key, title, data) VALUES
  ('operators', 'card.lost', 'k-ops', 'lost', '{}'),
  ('PUBA0001', 'invoice.created', 'k-a', 'invoice', '{}'),
  ('cust-b', 'invoice.created', 'k-b', 'invoice', '{}'),
  ('GONE0001', 'invoice.created', 'k-orphan', 'invoice', '{}');
"""


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return list(conn.execute(query).fetchall())


def test_first_version_rows_move_into_the_inboxes_and_back(scratch_db: str) -> None:
    upgrade(scratch_db, "0018_platform_events")
    with psycopg.connect(libpq_url(scratch_db)) as conn:
        conn.execute(FIRST_VERSION_ROWS)
    upgrade(scratch_db)
    moved = rows(scratch_db, "SELECT dedupe_key, audience, user_id FROM notifications ORDER BY 1")
    assert moved == [
        ("k-a", "user", "user-a"),
        ("k-b", "user", "user-b"),
        ("k-ops", "operators", None),
        ("k-orphan", "user", None),  # its driver is gone: kept, shown to nobody
    ]
    command.downgrade(alembic_config(scratch_db), "0018_platform_events")
    back = rows(scratch_db, "SELECT dedupe_key, user_public_id FROM notifications ORDER BY 1")
    assert back == [
        ("k-a", "PUBA0001"),
        ("k-b", "cust-b"),
        ("k-ops", "operators"),
        ("k-orphan", "GONE0001"),
    ]
