"""The pure part of the webhooks: retry schedule, the cursor's gaps, URL and address rules,
subscriptions, and the schemas (every documented example valid against its type's schema)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from domain import events as ev
from domain.webhook_schemas import DATA_SCHEMAS, EXAMPLES, schema_for
from domain.webhooks import (
    Cursor,
    RetrySchedule,
    advance,
    check_event_types,
    check_url,
    envelope,
    forbidden_address,
    subscribed,
)

T0 = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def test_the_default_schedule_backs_off_exponentially_for_at_least_a_day() -> None:
    delays = RetrySchedule().delays()
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert max(delays) == 3600.0
    assert sum(delays) >= 86400 and sum(delays[:-1]) < 86400
    assert delays == sorted(delays)


def test_the_cursor_keeps_gaps_until_they_commit_or_expire() -> None:
    cursor = advance(Cursor(10, {}), [11, 14], T0, timedelta(minutes=5))
    assert cursor.last_id == 14 and set(cursor.gaps) == {12, 13}
    later = advance(cursor, [13, 15], T0 + timedelta(minutes=1), timedelta(minutes=5))
    assert later.last_id == 15 and set(later.gaps) == {12}
    gone = advance(later, [], T0 + timedelta(minutes=6), timedelta(minutes=5))
    assert gone == Cursor(15, {})


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "private"),
        ("100.64.0.1", "not globally routable"),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_addresses_inside_the_network_are_forbidden(address: str, reason: str | None) -> None:
    assert forbidden_address(address) == reason


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example/", "https://", "http://a:b@x.example/", "https://x.example/#f", "x.example"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url)


def test_subscriptions_take_types_families_and_everything() -> None:
    assert check_event_types(["session.*", "card.lost", "card.lost"]) == ["card.lost", "session.*"]
    with pytest.raises(ValueError):
        check_event_types(["session.exploded"])
    with pytest.raises(ValueError):
        check_event_types([])
    assert subscribed(["session.*"], ev.SESSION_BILLED)
    assert subscribed(["*"], ev.CHARGER_OFFLINE)
    assert not subscribed(["session.*", ev.CARD_LOST], ev.CHARGER_OFFLINE)


def test_every_event_type_has_a_schema_and_the_examples_match() -> None:
    assert set(DATA_SCHEMAS) == set(ev.EVENT_TYPES)
    for event_type, data in EXAMPLES.items():
        jsonschema.validate(envelope(event_type, 7, T0, data), schema_for(event_type))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(envelope(ev.CARD_LOST, 7, T0, {}), schema_for(ev.CARD_LOST))
    with pytest.raises(jsonschema.ValidationError):  # the type must match the schema's
        jsonschema.validate(
            envelope(ev.CARD_LOST, 7, T0, EXAMPLES[ev.CARD_LOST]), schema_for(ev.SESSION_STARTED)
        )
