"""``polaris cards add|list|show|set|link|unlink``: EV cards. Thin over :mod:`services.cards`.

``link`` runs the card-link saga (the driver's account, the Lago customer and subscription, the
invitation) and waits for its answer, as the API does."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from cli.fleet_common import change_parser, given, optional, with_json, yes_no
from cli.output import emit_fields, emit_json, emit_table
from services import cards
from services.actor import Actor
from services.context import ServiceContext
from services.validation import parse

LIST_COLUMNS = (
    "id_tag",
    "label",
    "parent_id_tag",
    "is_active",
    "blocked",
    "expires_at",
    "lost_at",
    "email",
    "public_id",
)

FIELDS = {
    "label": "label",
    "parent": "parent_id_tag",
    "expires": "expires_at",
    "max_concurrent": "max_concurrent_sessions",
    "active": "is_active",
    "blocked": "blocked",
}


def when(value: str) -> datetime | None:
    """An ISO 8601 time or date (``2027-12-31``, ``2027-12-31T23:00:00+01:00``); without an
    offset it is UTC. ``""`` clears it (``cards set … --expires ""``)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _emit(value: Any, as_json: bool) -> None:
    if as_json:
        emit_json(value.model_dump(mode="json"))
    else:
        emit_fields(value.model_dump(mode="json"))


async def _add(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    new = parse(cards.CardIn, {"id_tag": args.id_tag, **given(args, FIELDS)})
    _emit(await cards.add_card(ctx, actor, new), args.json)
    return 0


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await cards.list_cards(ctx, q=args.search, limit=args.limit, offset=args.offset)
    if args.json:
        emit_json([r.model_dump(mode="json") for r in rows])
    else:
        emit_table([r.model_dump(mode="json") for r in rows], LIST_COLUMNS)
    return 0


async def _show(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    _emit(await cards.show_card(ctx, args.id_tag), args.json)
    return 0


async def _set(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    patch = parse(cards.CardPatch, given(args, FIELDS, clearing=True))
    _emit(await cards.set_card(ctx, actor, args.id_tag, patch), args.json)
    return 0


async def _link(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    link = parse(
        cards.LinkIn,
        {
            "email": args.email,
            "confirm_reassign": args.confirm_reassign,
            "invite": not args.no_invite,
            **given(
                args,
                {
                    "name": "name",
                    "billing_mode": "billing_mode",
                    "plan": "plan_code",
                    "currency": "currency",
                },
            ),
        },
    )
    result = await cards.link_card(ctx, actor, args.id_tag, link)
    if args.json:
        emit_json(result.model_dump(mode="json"))
        return 0
    print(
        f"card {result.id_tag} linked to {link.email} "
        f"(user {result.user_id}, public id {result.public_id})"
    )
    print(f"  account: {'created' if result.user_created else 'existing'}")
    print(f"  invitation: {'sent' if result.invited else 'not sent'}")
    print(f"  Lago customer: {result.lago_customer or '-'}")
    print(f"  Lago subscription: {result.lago_subscription or '-'}")
    print(f"  steps: {', '.join(result.completed)}")
    return 0


async def _unlink(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    result = await cards.unlink_card(ctx, actor, args.id_tag)
    if args.json:
        emit_json(result.model_dump(mode="json"))
        return 0
    also = f" (and its child cards {', '.join(result.cascaded_to)})" if result.cascaded_to else ""
    print(f"card {result.id_tag} unlinked{also}: it is Invalid on the chargers' lists now")
    return 0


def _card_options(parser: argparse.ArgumentParser, *, clearable: bool) -> None:
    text = optional if clearable else str
    clears = ' ("" clears it)' if clearable else ""
    parser.add_argument("--label", type=text, help="a name for people" + clears)
    parser.add_argument("--parent", type=text, help="parent idTag (a group card)" + clears)
    parser.add_argument(
        "--expires", type=when, metavar="ISO", help="expiry (2027-12-31 or ISO time)" + clears
    )
    parser.add_argument(
        "--max-concurrent", type=int, metavar="N", help="sessions at once on this card (1-10)"
    )


def add_cards_commands(sub: Any) -> Any:
    group = sub.add_parser("cards", help="EV cards (RFID idTags) and their drivers")
    cards_sub = group.add_subparsers(dest="cards_command", required=True)

    add = with_json(cards_sub.add_parser("add", help="register a card"))
    add.add_argument("id_tag", help="idTag (printable ASCII, at most 20 characters)")
    _card_options(add, clearable=False)
    add.add_argument("--blocked", type=yes_no, metavar="true|false", help="registered but refused")
    add.set_defaults(handler=_add)

    ls = with_json(cards_sub.add_parser("list", help="list cards with their drivers"))
    ls.add_argument("--search", help="a part of the idTag")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--offset", type=int, default=0)
    ls.set_defaults(handler=_list)

    show = with_json(cards_sub.add_parser("show", help="one card, its links and child cards"))
    show.add_argument("id_tag")
    show.set_defaults(handler=_show)

    change = with_json(cards_sub.add_parser("set", help="change a card"))
    change.add_argument("id_tag")
    change_parser(change)
    _card_options(change, clearable=True)
    change.add_argument("--blocked", type=yes_no, metavar="true|false")
    change.add_argument(
        "--active", type=yes_no, metavar="true|false", help="false: the card is Invalid"
    )
    change.set_defaults(handler=_set)

    link = with_json(
        cards_sub.add_parser(
            "link", help="link a card to a driver (account, Lago customer; waits for the answer)"
        )
    )
    link.add_argument("id_tag")
    link.add_argument("--email", required=True, help="the driver's e-mail")
    link.add_argument("--name", help="the driver's name (for a new account)")
    link.add_argument("--billing-mode", choices=["usage", "per_session"], help="default: usage")
    link.add_argument("--plan", help="Lago plan code (default: the platform's)")
    link.add_argument("--currency", help="Lago customer currency (default: EUR)")
    link.add_argument(
        "--confirm-reassign",
        action="store_true",
        help="take the card from the driver it is linked to now",
    )
    link.add_argument(
        "--no-invite", action="store_true", help="no invitation mail for a new account"
    )
    link.set_defaults(handler=_link)

    unlink = with_json(
        cards_sub.add_parser("unlink", help="unlink a card (and its child cards) from its driver")
    )
    unlink.add_argument("id_tag")
    unlink.set_defaults(handler=_unlink)
    return cards_sub


__all__ = ["add_cards_commands", "when"]
