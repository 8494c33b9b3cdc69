"""Local lists end to end: card changes → the reconciler → LocalListSync → the real gateway →
a real ``ocpp`` 1.6 charge point that keeps its list as the spec says."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from temporalio.client import Client

from db.engine import SessionFactory
from db.local_list_models import ChargerLocalList
from db.models import Charger, EvCard, UserMapping
from gateway.main import Gateway
from services import local_lists
from services.actor import Actor
from services.context import ServiceContext
from tests.gateway.conftest import seed_card, seed_charger
from tests.helpers import eventually
from tests.local_lists.conftest import (
    CoreOnlyCharger,
    ListCharger,
    NotSupportedCharger,
    charge_point,
)
from workflows.local_list_messages import LocalListSyncInput, local_list_workflow_id
from workflows.local_list_sync import LocalListSyncWorkflow

pytestmark = pytest.mark.timeout(180)

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "local_list_sync_v1.json"


async def row(sf: SessionFactory, charge_box_id: str) -> ChargerLocalList:
    async with sf() as db:
        found = await db.get(ChargerLocalList, charge_box_id)
    assert found is not None, "no charger_local_lists row yet"
    return found


async def at_version(cp: ListCharger, version: int) -> None:
    """The charger holds ``version`` and we recorded it (the charger answers first)."""
    sf: SessionFactory = cp.session_factory

    async def reached() -> bool:
        assert cp.version == version, (cp.version, cp.received[-1:])
        async with sf() as db:
            found = await db.get(ChargerLocalList, cp.id)
        assert found is not None and found.list_version == version
        return True

    await eventually(reached, timeout=60, message=f"list version {version}")


async def settled(sf: SessionFactory, charge_box_id: str) -> ChargerLocalList:
    """The round finished: nothing pending, the outcome recorded (it follows the charger's
    answer, so a test that saw the charger's side waits for ours)."""

    async def done() -> ChargerLocalList:
        found = await row(sf, charge_box_id)
        assert found.sync_done >= found.sync_requested and not found.full_requested
        assert found.clear_cache_done >= found.clear_cache_requested
        assert found.last_sync_status is not None
        return found

    return await eventually(done, timeout=60, message="the sync round to finish")


async def set_card(sf: SessionFactory, id_tag: str, **values: Any) -> None:
    async with sf.begin() as db:
        await db.execute(update(EvCard).where(EvCard.id_tag == id_tag).values(**values))


async def test_versions_follow_card_changes_with_differential_lists(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        tag = await seed_card(session_factory, prefix="LL")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)
        first = cp.received[-1]
        assert first["updateType"] == "Differential" and first["listVersion"] == 1
        assert cp.entries[tag] == {"status": "Accepted"}
        stored = await settled(session_factory, cb)
        assert stored.list_version == 1 and stored.supported is True
        assert stored.max_length == 10000 and stored.send_max_length == 2000
        assert stored.entries[tag] == {"status": "Accepted"}

        # Blocked: only that card travels.
        await set_card(session_factory, tag, blocked=True)
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 2)
        assert cp.received[-1] == {
            "listVersion": 2,
            "updateType": "Differential",
            "entries": [{"id_tag": tag, "id_tag_info": {"status": "Blocked"}}],
        }

        # Gone from the cards: removed, sent without idTagInfo.
        async with session_factory.begin() as db:
            await db.execute(delete(UserMapping).where(UserMapping.id_tag == tag))
            await db.execute(delete(EvCard).where(EvCard.id_tag == tag))
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 3)
        assert cp.received[-1] == {
            "listVersion": 3,
            "updateType": "Differential",
            "entries": [{"id_tag": tag}],
        }
        assert tag not in cp.entries
        stored = await settled(session_factory, cb)
        assert stored.list_version == 3 and tag not in stored.entries
        assert stored.last_sync_status == "sent"
        # What the charger holds is exactly what we recorded.
        assert {t: _camel(i) for t, i in cp.entries.items()} == stored.entries
        view = await local_lists.show(ctx, cb)
        assert view.list_version == 3 and view.in_step is True


async def test_version_mismatch_and_a_disagreeing_charger_get_a_full_update(
    stack: Gateway,
    ctx: ServiceContext,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    """With ``POLARIS_RECORD_HISTORIES=1`` it also records ``tests/histories/local_list_sync_v1
    .json`` (replayed by ``tests/workflows/test_replay.py``)."""
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        tag = await seed_card(session_factory, prefix="LM")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)

        # The charger refuses the next differential update: a Full one follows.
        cp.answers = ["VersionMismatch"]
        await set_card(session_factory, tag, blocked=True)
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 2)
        refused, full = cp.received[-2:]
        assert refused["updateType"] == "Differential" and refused["listVersion"] == 2
        assert full["updateType"] == "Full" and full["listVersion"] == 2
        assert {"id_tag": tag, "id_tag_info": {"status": "Blocked"}} in full["entries"]
        assert len(full["entries"]) == len(cp.entries)

        # The charger lost its list (factory reset): its version disagrees with ours → Full.
        cp.version, cp.entries = 0, {}
        await set_card(session_factory, tag, blocked=False)
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 3)
        assert cp.received[-1]["updateType"] == "Full"
        assert cp.entries[tag] == {"status": "Accepted"}
        stored = await settled(session_factory, cb)
        assert stored.list_version == 3
        assert {t: _camel(i) for t, i in cp.entries.items()} == stored.entries
        if os.environ.get("POLARIS_RECORD_HISTORIES"):
            handle = temporal_client.get_workflow_handle(local_list_workflow_id(cb))
            HISTORY.write_text((await handle.fetch_history()).to_json())


@pytest.mark.parametrize("cls", [NotSupportedCharger, CoreOnlyCharger])
async def test_a_charger_without_local_lists_is_marked_and_skipped(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory, cls: type[Any]
) -> None:
    plain = await seed_charger(session_factory)
    witness = await seed_charger(session_factory)
    async with charge_point(stack, plain, cls) as cp, charge_point(stack, witness) as other:
        tag = await seed_card(session_factory, prefix="LN")
        await local_lists.cards_changed(ctx, [tag])

        async def unsupported() -> bool:
            found = await row(session_factory, plain)
            assert found.supported is False, found.last_sync_status
            return True

        await eventually(unsupported, timeout=60)
        await at_version(other, 1)
        found = await row(session_factory, plain)
        assert found.last_sync_status == "unsupported" and found.unsupported_reason
        asked = getattr(cp, "list_version_asks", None)

        # Skipped from then on: the next change reaches the other charger only.
        await set_card(session_factory, tag, blocked=True)
        await local_lists.cards_changed(ctx, [tag])
        await at_version(other, 2)
        assert getattr(cp, "list_version_asks", None) == asked
        assert getattr(cp, "received", []) == []
        assert (await row(session_factory, plain)).list_version == 0


async def test_report_lost_pushes_the_block_and_clears_every_cache(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    plain = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp, charge_point(stack, plain, CoreOnlyCharger) as core:
        tag = await seed_card(session_factory, prefix="LL")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)

        await set_card(session_factory, tag, lost_at=datetime.now(UTC), is_active=False)
        await local_lists.card_lost(ctx, tag)
        await at_version(cp, 2)
        assert cp.received[-1]["entries"] == [{"id_tag": tag, "id_tag_info": {"status": "Blocked"}}]
        # ClearCache reaches both, the one without a local list too.
        await eventually(lambda: cp.clear_caches == 1 and core.clear_caches == 1, timeout=60)
        stored = await settled(session_factory, cb)
        assert stored.clear_cache_done == stored.clear_cache_requested
        assert stored.last_clear_cache_status == "Accepted"


async def test_an_offline_charger_is_synced_when_it_comes_back(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        tag = await seed_card(session_factory, prefix="LO")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)
        held = dict(cp.entries)

    async def offline() -> bool:
        async with session_factory() as db:
            charger = await db.get(Charger, cb)
        assert charger is not None and not charger.connected
        return True

    await eventually(offline, timeout=30)
    await set_card(session_factory, tag, blocked=True)
    await local_lists.cards_changed(ctx, [tag])
    stored = await row(session_factory, cb)
    assert stored.sync_requested > stored.sync_done  # waits for the charger

    # The charger kept its list across the outage.
    async with charge_point(stack, cb, version=1, entries=held) as back:
        await at_version(back, 2)
        assert back.received == [
            {
                "listVersion": 2,
                "updateType": "Differential",
                "entries": [{"id_tag": tag, "id_tag_info": {"status": "Blocked"}}],
            }
        ]
        assert (await settled(session_factory, cb)).last_sync_status == "sent"


async def test_a_forced_sync_sends_a_full_update(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        tag = await seed_card(session_factory, prefix="LF")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)
        asked = await local_lists.request_sync(ctx, Actor.cli(), cb)
        assert asked.signalled is True
        view = await local_lists.wait_for_sync(ctx, cb, asked.requested_at, 60)
        assert view.last_sync_status == "sent" and view.list_version == 2
        assert cp.received[-1]["updateType"] == "Full"
        assert view.sync_pending is False and view.in_step is True

        everyone = await local_lists.request_sync(ctx, Actor.cli(), None)
        assert everyone.charge_box_id is None and everyone.signalled is True
        await at_version(cp, 3)
        assert cp.received[-1]["updateType"] == "Full"
        assert (await settled(session_factory, cb)).full_requested is False


def _camel(info: dict[str, Any]) -> dict[str, Any]:
    names = {"expiry_date": "expiryDate", "parent_id_tag": "parentIdTag"}
    return {names.get(k, k): v for k, v in info.items()}


async def test_an_expired_card_is_found_by_the_reconciler(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    """No event announces an expiry: the reconciler compares the acknowledged list with the
    cards and sends what changed."""
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        tag = await seed_card(session_factory, prefix="LE")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)
        await settled(session_factory, cb)
        # Time passes (the card's expiry is now behind us); nobody touches the counters.
        await set_card(session_factory, tag, expires_at=datetime(2020, 1, 1, tzinfo=UTC))
        assert await local_lists.wake_reconciler(ctx, "test") is True
        await at_version(cp, 2)
        assert cp.received[-1]["entries"] == [{"id_tag": tag, "id_tag_info": {"status": "Expired"}}]


async def test_a_long_lived_sync_workflow_continues_as_new(
    stack: Gateway,
    ctx: ServiceContext,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    cb = await seed_charger(session_factory)
    async with charge_point(stack, cb) as cp:
        handle = await temporal_client.start_workflow(
            LocalListSyncWorkflow.run,
            LocalListSyncInput(charge_box_id=cb, continue_as_new_after_rounds=1, pending=False),
            id=local_list_workflow_id(cb),
            task_queue=ctx.settings.temporal_task_queue,
        )
        first_run = handle.result_run_id
        tag = await seed_card(session_factory, prefix="LC")
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 1)
        await set_card(session_factory, tag, blocked=True)
        await local_lists.cards_changed(ctx, [tag])
        await at_version(cp, 2)
        latest = await temporal_client.get_workflow_handle(local_list_workflow_id(cb)).describe()
        assert latest.run_id != first_run
        assert cp.received[-1]["entries"] == [{"id_tag": tag, "id_tag_info": {"status": "Blocked"}}]


async def test_the_charger_limits_are_respected(
    stack: Gateway, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    """LocalAuthListMaxLength caps the list (Accepted entries first); SendLocalListMaxLength
    cuts every update into messages of at most that many entries."""
    cb = await seed_charger(session_factory)
    limits = {
        "LocalAuthListMaxLength": "3",
        "SendLocalListMaxLength": "2",
        "SupportedFeatureProfiles": "Core,LocalAuthListManagement",
    }
    async with charge_point(stack, cb, config=limits) as cp:
        tags = [await seed_card(session_factory, prefix="LK") for _ in range(3)]
        await seed_card(session_factory, prefix="LK", blocked=True)
        await local_lists.cards_changed(ctx, tags)
        stored = await settled(session_factory, cb)
        assert stored.max_length == 3 and stored.send_max_length == 2
        assert len(cp.received) >= 2
        assert all(len(message["entries"]) <= 2 for message in cp.received)
        assert [m["listVersion"] for m in cp.received] == list(range(1, len(cp.received) + 1))
        assert len(cp.entries) <= 3 and cp.version == stored.list_version
        assert all(info["status"] == "Accepted" for info in cp.entries.values())
        assert {t: _camel(i) for t, i in cp.entries.items()} == stored.entries
