"""``polaris seed demo``: idempotent demo data for a new installation.

A site with charger ``DEMO-CP-1`` (2 connectors), a tariff, an EV card ``DEMO-CARD-1`` mapped to
the driver ``driver@example.com``, the cards an OCPP 2.0.1 charger presents (:data:`DEMO_201_CARDS`:
ISO 14443 hex UIDs with their token type, two cards of one group, a blocked and an expired card,
all the driver's), and an admin (``POLARIS_ADMIN_EMAIL``, default
``admin@example.com``) whose password is ``POLARIS_ADMIN_PASSWORD`` or generated and printed once,
when the admin is first created. Running it again changes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from cli.seed_billing import seed_demo_billing
from config.settings import Settings
from db.engine import make_engine, make_session_factory
from db.models import Charger, Connector, EvCard, Site, Tariff, UserMapping
from domain.ids import public_id_from_bytes

DEMO_SITE = "Demo site"
DEMO_CHARGER = "DEMO-CP-1"
DEMO_CONNECTORS = (1, 2)
DEMO_CARD = "DEMO-CARD-1"
DEMO_DRIVER = "driver@example.com"
DEMO_TARIFF = "demo-standard"
# The group (parent) of the two fleet cards: an idTag no charger presents itself.
DEMO_GROUP = "DEMO-FLEET-GROUP"


@dataclass(frozen=True)
class DemoCard:
    id_tag: str
    label: str
    token_type: str | None = None
    parent: str | None = None
    blocked: bool = False
    expired: bool = False


# What an OCPP 2.0.1 charger presents: RFID cards by their UID in hex (ISO 14443: 4 or 7 bytes)
# with the idToken type (a typed card matches only that type); 2.0.1 Authorize and
# TransactionEvent answer their status and groupIdToken (docs/gateway.md, "OCPP 2.0.1").
DEMO_201_CARDS: tuple[DemoCard, ...] = (
    DemoCard("04E1A2B3C4D5E6", "ISO 14443 card (7-byte UID)", token_type="ISO14443"),
    DemoCard("A1B2C3D4", "second ISO 14443 card (4-byte UID)", token_type="ISO14443"),
    DemoCard("04F1000000000A", "fleet card A", token_type="ISO14443", parent=DEMO_GROUP),
    DemoCard("04F1000000000B", "fleet card B", token_type="ISO14443", parent=DEMO_GROUP),
    DemoCard("04B10C0ED00001", "blocked card", token_type="ISO14443", blocked=True),
    DemoCard("04E0000000DEAD", "expired card", token_type="ISO14443", expired=True),
)
EXPIRED_AT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AuthUser:
    id: str
    email: str
    role: str
    created: bool


async def ensure_auth_user(
    settings: Settings, email: str, *, name: str, role: str, password: str | None = None
) -> AuthUser:
    """Create the user in BetterAuth if missing (its internal endpoint is idempotent)."""
    body: dict[str, str] = {"email": email, "name": name, "role": role}
    if password is not None:
        body["password"] = password
    # The seed acts as the API (compose runs it in the api service, with the api's token).
    internal_url = settings.auth_internal_base_url
    async with httpx.AsyncClient(base_url=internal_url, timeout=10.0) as client:
        try:
            response = await client.post(
                "/internal/users",
                json=body,
                headers={"Authorization": f"Bearer {settings.internal_token_for('api')}"},
            )
        except httpx.HTTPError as exc:
            raise RuntimeError(
                f"the auth service's internal listener at {internal_url} is not reachable "
                f"({exc!r}); "
                "is `polaris dev` running?"
            ) from exc
    if response.status_code >= 400:
        raise RuntimeError(f"auth service refused to create {email}: HTTP {response.status_code}")
    data = response.json()
    return AuthUser(
        id=str(data["id"]),
        email=str(data["email"]),
        role=str(data.get("role", role)),
        created=bool(data.get("created", False)),
    )


async def _seed_rows(session: AsyncSession, driver: AuthUser) -> str:
    """The demo rows; returns the demo driver's public id (their Lago customer id)."""
    await session.execute(insert(Site).values(name=DEMO_SITE).on_conflict_do_nothing())
    site_id = (await session.execute(select(Site.id).where(Site.name == DEMO_SITE))).scalar_one()
    await session.execute(
        insert(Tariff)
        .values(
            code=DEMO_TARIFF,
            currency="EUR",
            price_per_kwh_minor=30,
            price_per_minute_minor=0,
            price_per_session_minor=50,
            is_default=True,
        )
        .on_conflict_do_nothing()
    )
    tariff_id = (
        await session.execute(select(Tariff.id).where(Tariff.code == DEMO_TARIFF))
    ).scalar_one()
    await session.execute(
        insert(Charger)
        .values(charge_box_id=DEMO_CHARGER, site_id=site_id, tariff_id=tariff_id)
        .on_conflict_do_nothing()
    )
    for connector_id in DEMO_CONNECTORS:
        await session.execute(
            insert(Connector)
            .values(charge_box_id=DEMO_CHARGER, connector_id=connector_id)
            .on_conflict_do_nothing()
        )
    await session.execute(
        insert(EvCard).values(id_tag=DEMO_CARD, label="Demo card").on_conflict_do_nothing()
    )
    await session.execute(
        insert(EvCard)
        .values(id_tag=DEMO_GROUP, label="Demo fleet (group of two cards)")
        .on_conflict_do_nothing()
    )
    for card in DEMO_201_CARDS:
        await session.execute(
            insert(EvCard)
            .values(
                id_tag=card.id_tag,
                label=f"Demo {card.label}",
                token_type=card.token_type,
                parent_id_tag=card.parent,
                blocked=card.blocked,
                expires_at=EXPIRED_AT if card.expired else None,
            )
            .on_conflict_do_nothing()
        )
    public_id = await _map_card(session, driver, DEMO_CARD, None)
    for card in DEMO_201_CARDS:
        await _map_card(session, driver, card.id_tag, public_id)
    return public_id


async def _map_card(
    session: AsyncSession, driver: AuthUser, id_tag: str, public_id: str | None
) -> str:
    """Map ``id_tag`` to the driver once; answers the mapping's public id."""
    mapped = (
        await session.execute(
            select(UserMapping.public_id).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
    ).scalar_one_or_none()
    if mapped is not None:
        return mapped
    existing_public_id = (
        await session.execute(
            select(UserMapping.public_id).where(UserMapping.user_id == driver.id).limit(1)
        )
    ).scalar_one_or_none()
    public_id = public_id or existing_public_id or public_id_from_bytes(secrets.token_bytes(5))
    session.add(
        UserMapping(
            user_id=driver.id,
            public_id=public_id,
            email=driver.email,
            id_tag=id_tag,
            lago_customer_external_id=public_id,
        )
    )
    await session.flush()
    return public_id


async def seed_demo(settings: Settings) -> int:
    database_url = settings.require_database_url()
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    generated = admin_password is None
    if admin_password is None:
        admin_password = secrets.token_urlsafe(12)
    admin = await ensure_auth_user(
        settings, settings.admin_email, name="Administrator", role="admin", password=admin_password
    )
    driver = await ensure_auth_user(settings, DEMO_DRIVER, name="Demo Driver", role="customer")

    engine = make_engine(database_url, pool_size=1)
    try:
        factory = make_session_factory(engine)
        async with factory() as session, session.begin():
            public_id = await _seed_rows(session, driver)
        if "lago_api_url" in settings.embedded:
            subscription = await seed_demo_billing(
                settings, factory, public_id=public_id, email=DEMO_DRIVER
            )
            billing = f"Lago sandbox: customer {public_id}, subscription {subscription}"
        else:
            billing = (
                "not seeded: a real Lago is configured (create the plan "
                f"{settings.lago_plan_code!r} there)"
            )
    finally:
        await engine.dispose()

    print(f"site       {DEMO_SITE}")
    print(f"charger    {DEMO_CHARGER} (connectors {', '.join(map(str, DEMO_CONNECTORS))})")
    print(f"card       {DEMO_CARD} -> {DEMO_DRIVER}")
    for card in DEMO_201_CARDS:
        group = f", group {card.parent}" if card.parent else ""
        print(f"card       {card.id_tag} ({card.token_type}{group}): {card.label} -> {DEMO_DRIVER}")
    print(f"tariff     {DEMO_TARIFF}: 0.30 EUR/kWh + 0.50 EUR per session")
    print(f"billing    {billing}")
    if admin.created and generated:
        print(f"admin      {admin.email}  password: {admin_password}  (shown once; keep it)")
    elif admin.created:
        print(f"admin      {admin.email}  password from POLARIS_ADMIN_PASSWORD")
    else:
        print(f"admin      {admin.email}  (already existed; password unchanged)")
    return 0
