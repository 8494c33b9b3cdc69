"""The operators' session list (filters, a stable cursor, validation) and looking a session up
by its transaction id, over real PostgreSQL (rolled back per test)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from db.models import Charger, ChargingSession, Transaction
from services.errors import InvalidInput
from services.operator_views import find_session
from services.session_list import SessionQuery, find_sessions, parse_session_query

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings(env="test", operator_timezone="Europe/Berlin")


async def seed(db: AsyncSession) -> tuple[str, list[ChargingSession]]:
    cb = f"LIST-{uuid.uuid4().hex[:8]}"
    other = f"{cb}-other"
    db.add_all([Charger(charge_box_id=cb), Charger(charge_box_id=other)])
    rows = [
        ChargingSession(
            workflow_id=f"session:{cb}:{i:02d}",
            state=("closed", "charging", "rejected")[i % 3],
            charge_box_id=cb,
            id_tag="CARD-A" if i % 2 else "CARD-B",
            user_id="user-a" if i % 2 else "user-b",
            # Two sessions share a start (ties are ordered by workflow id); rejected ones never
            # started.
            started_at=None if i % 3 == 2 else T0 + timedelta(hours=min(i, 6)),
        )
        for i in range(10)
    ]
    rows.append(
        ChargingSession(
            workflow_id=f"session:{other}:x", state="closed", charge_box_id=other, started_at=T0
        )
    )
    db.add_all(rows)
    await db.flush()
    return cb, rows


async def test_filters_combine(db_session: AsyncSession) -> None:
    cb, _ = await seed(db_session)

    async def ids(**filters: object) -> list[str]:
        query = parse_session_query(SETTINGS, charger=cb, limit=100, **filters)  # type: ignore[arg-type]
        return [
            r.workflow_id.rsplit(":", 1)[1] for r in (await find_sessions(db_session, query)).rows
        ]

    assert len(await ids()) == 10
    assert await ids(card="CARD-A", state="charging") == ["07", "01"]
    # Never started (rejected): listed by when they were requested (now, in 2026: after the 2030
    # starts), ties by workflow id.
    assert await ids(user="user-b", state="closed,rejected") == ["06", "00", "08", "02"]
    # Dates without a time are midnights in the operator's zone (Berlin: UTC+2 in May).
    assert await ids(
        started_from="2030-05-01T15:00:00Z", started_to="2030-05-01T17:00:00+00:00"
    ) == [
        "04",
        "03",
    ]
    assert len(await ids(started_from="2030-05-01", started_to="2030-05-02")) == 7
    assert await ids(started_from="2030-05-02") == []


async def test_cursor_pages_through_ties_and_unstarted_sessions_exactly_once(
    db_session: AsyncSession,
) -> None:
    cb, rows = await seed(db_session)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = parse_session_query(SETTINGS, charger=cb, limit=3, cursor=cursor)
        page = await find_sessions(db_session, query)
        seen += [r.workflow_id for r in page.rows]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == sorted(r.workflow_id for r in rows if r.charge_box_id == cb)
    everything = await find_sessions(db_session, SessionQuery(charge_box_id=cb, limit=100))
    assert seen == [r.workflow_id for r in everything.rows]
    listed = [r.started_at or r.created_at for r in everything.rows]
    assert listed == sorted(listed, reverse=True)
    # Sessions that never started are listed by their request (here: now, before the 2030 starts).
    started = [r for r in everything.rows if r.started_at is not None]
    assert all(r.started_at is None for r in everything.rows[len(started) :])


@pytest.mark.parametrize(
    ("filters", "paths"),
    [
        ({"started_from": "yesterday"}, [["from"]]),
        ({"started_from": "2030-02-30"}, [["from"]]),
        ({"started_from": "2030-05-02", "started_to": "2030-05-01"}, [["to"]]),
        ({"state": "charging,flying"}, [["state"]]),
        ({"limit": 0}, [["limit"]]),
        ({"limit": 501, "offset": -1}, [["limit"], ["offset"]]),
        ({"cursor": "not-a-cursor"}, [["cursor"]]),
        ({"card": "x" * 21}, [["card"]]),
    ],
)
def test_bad_filters_are_refused_with_one_issue_each(
    filters: dict[str, object], paths: list[list[str]]
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_session_query(SETTINGS, **filters)  # type: ignore[arg-type]
    assert [i["path"] for i in refused.value.issues] == paths


async def test_a_session_is_found_by_its_transaction_id(db_session: AsyncSession) -> None:
    cb, rows = await seed(db_session)
    tx = Transaction(
        charge_box_id=cb,
        connector_id=1,
        id_tag="CARD-A",
        workflow_id=rows[1].workflow_id,
        meter_start_wh=0,
        started_at=T0,
    )
    db_session.add(tx)
    await db_session.flush()
    found = await find_session(db_session, str(tx.id))
    assert found is not None and found.workflow_id == rows[1].workflow_id
    by_id = await find_session(db_session, rows[1].workflow_id)
    assert by_id is found
    assert await find_session(db_session, "99999999999999999999999") is None
    assert await find_session(db_session, "session:nope") is None
