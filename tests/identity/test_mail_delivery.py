"""The mail relay: a magic link requested from the real auth service reaches a real SMTP server.

The SMTP server is aiosmtpd in a thread (with AUTH, so the relay's login is exercised); the
relay is the real MailDeliveryWorkflow on a real worker, started the way the worker starts it.
"""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mail import MailActivities, SmtpTarget, message_id
from config.settings import Settings, libpq_url
from db.engine import SessionFactory
from tests.fixtures.auth import AuthService, ensure_user
from tests.helpers import eventually, free_port
from tests.identity.conftest import unique_email
from worker import build_worker, start_mail_delivery
from workflows.mail_delivery import DeliverMailInput, MailDeliveryInput

pytestmark = pytest.mark.timeout(120)

SMTP_USER = "relay"
SMTP_PASSWORD = "relay-secret"
MAIL_FROM = "Polaris Test <links@polaris.test>"


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(  # aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        assert session.authenticated, "the relay sent without logging in"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,  # a test server on loopback: no certificate to present
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_settings(settings: Settings, port: int) -> Settings:
    url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{port}?starttls=false"
    return settings.model_copy(update={"smtp_url": SecretStr(url), "mail_from": MAIL_FROM})


async def outbox_row(pg_url: str, email_address: str) -> tuple[Any, ...] | None:
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute(
            "SELECT id, url, sent_at, delivery, last_error FROM auth.mail_outbox"
            " WHERE to_email = %s ORDER BY id DESC LIMIT 1",
            (email_address,),
        )
        return await cur.fetchone()


async def queue_mail(pg_url: str, to: str) -> int:
    """A row as the auth service writes it (for the activity-level cases)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute(
            "INSERT INTO auth.mail_outbox (to_email, subject, body) VALUES (%s, %s, %s)"
            " RETURNING id",
            (to, "Hello", "A test message."),
        )
        row = await cur.fetchone()
        await conn.commit()
    assert row is not None
    return int(row[0])


async def until_handled(activities: MailActivities, pg_url: str, to: str) -> tuple[Any, ...]:
    """Run the activity (other tests' rows may be ahead in the queue) until ``to`` is handled."""
    env = ActivityEnvironment()

    async def handled() -> tuple[Any, ...] | None:
        await env.run(activities.deliver_pending_mail, DeliverMailInput(limit=200))
        row = await outbox_row(pg_url, to)
        return row if row is not None and row[2] is not None else None

    return await eventually(handled, timeout=20)


async def test_magic_link_reaches_the_smtp_server(
    smtp_server: tuple[Inbox, int],
    identity_settings: Settings,
    temporal_client: Client,
    session_factory: SessionFactory,
    auth_service: AuthService,
    pg_url: str,
    task_queue: str,
) -> None:
    inbox, port = smtp_server
    settings = smtp_settings(identity_settings, port)
    workflow_id = f"mail-delivery-test-{uuid.uuid4().hex[:8]}"
    address = unique_email("mailed")
    await ensure_user(auth_service, address)
    async with build_worker(temporal_client, settings, session_factory, task_queue=task_queue):
        params = MailDeliveryInput(interval_s=0.3, iterations_per_run=5)
        await start_mail_delivery(
            temporal_client, task_queue, workflow_id=workflow_id, params=params
        )
        # A second start (another worker starting up) joins the running relay.
        await start_mail_delivery(
            temporal_client, task_queue, workflow_id=workflow_id, params=params
        )
        handle = temporal_client.get_workflow_handle(workflow_id)
        try:
            async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
                asked = await auth.post(
                    "/api/auth/sign-in/magic-link",
                    json={"email": address},
                    headers={"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"},
                )
                assert asked.status_code == 200, asked.text

                mails = await eventually(lambda: inbox.to(address), timeout=30)
                assert len(mails) == 1
                mail = mails[0]

                # The relay records the delivery after the SMTP server took the mail (a crash
                # between the two sends it again, with the same Message-ID): wait for the record.
                async def recorded() -> tuple[Any, ...] | None:
                    row = await outbox_row(pg_url, address)
                    return row if row is not None and row[2] is not None else None

                row = await eventually(recorded, timeout=30)
                row_id, url, sent_at, delivery, last_error = row
                assert (delivery, last_error) == ("smtp", None) and sent_at is not None
                assert mail["Message-ID"] == message_id(row_id, MAIL_FROM)
                assert mail["From"] == MAIL_FROM
                found = re.search(r"https?://\S+", mail.get_content())
                assert found is not None
                link = found[0]
                # Delivered: the outbox row no longer holds a working link.
                assert url is None

                # The mailed link signs the driver in.
                opened = await auth.get(link, follow_redirects=False)
                assert opened.status_code in (200, 302), opened.text
                assert opened.headers.get("set-auth-token")
        finally:
            await handle.terminate("test over")
    assert len(inbox.to(address)) == 1  # never sent twice


async def test_relay_continues_as_new(
    identity_settings: Settings,
    temporal_client: Client,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    workflow_id = f"mail-delivery-test-{uuid.uuid4().hex[:8]}"
    async with build_worker(
        temporal_client, identity_settings, session_factory, task_queue=task_queue
    ):
        params = MailDeliveryInput(interval_s=0.05, iterations_per_run=2)
        await start_mail_delivery(
            temporal_client, task_queue, workflow_id=workflow_id, params=params
        )
        first = temporal_client.get_workflow_handle(workflow_id)
        first_run = (await first.describe()).run_id
        try:

            async def new_run() -> bool:
                latest = await temporal_client.get_workflow_handle(workflow_id).describe()
                return latest.run_id != first_run

            await eventually(new_run, timeout=30)
        finally:
            await temporal_client.get_workflow_handle(workflow_id).terminate("test over")


async def test_refused_and_unreachable(
    smtp_server: tuple[Inbox, int],
    identity_settings: Settings,
    session_factory: SessionFactory,
    pg_url: str,
) -> None:
    inbox, port = smtp_server
    refused_to = unique_email("bounce")
    inbox.refuse.add(refused_to)
    await queue_mail(pg_url, refused_to)
    row = await until_handled(
        MailActivities(smtp_settings(identity_settings, port), session_factory),
        pg_url,
        refused_to,
    )
    assert row[3] == "refused" and "550" in row[4]
    assert inbox.to(refused_to) == []

    # Nothing listens: a retryable error, and the row stays in the queue.
    closed = smtp_settings(identity_settings, free_port())
    waiting = unique_email("waiting")
    await queue_mail(pg_url, waiting)
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(
            MailActivities(closed, session_factory).deliver_pending_mail, DeliverMailInput()
        )
    assert failed.value.type == "MailUnavailable" and not failed.value.non_retryable
    row_after = await outbox_row(pg_url, waiting)
    assert row_after is not None and row_after[2] is None

    # Without SMTP (polaris dev): kept in the outbox, marked delivered locally.
    local = await until_handled(
        MailActivities(identity_settings.model_copy(update={"smtp_url": None}), session_factory),
        pg_url,
        waiting,
    )
    assert local[3] == "local" and local[4] is None


def test_smtp_url_parsing() -> None:
    target = SmtpTarget.parse("smtp://me%40x.org:p%2Fw@mail.example:587")
    assert (target.host, target.port, target.username, target.password) == (
        "mail.example",
        587,
        "me@x.org",
        "p/w",
    )
    assert target.starttls and not target.implicit_tls
    assert not SmtpTarget.parse("smtp://mail.example?starttls=false").starttls
    assert SmtpTarget.parse("smtp://mail.example:2525?starttls=true").starttls
    tls = SmtpTarget.parse("smtps://mail.example")
    assert tls.port == 465 and tls.implicit_tls and not tls.starttls
    assert SmtpTarget.parse("smtp://mail.example").port == 25
    for bad in ("http://mail.example", "smtp://", "smtp://h?starttls=maybe"):
        with pytest.raises(Exception, match="POLARIS_SMTP_URL"):
            SmtpTarget.parse(bad)
