"""Attack: read magic links on the path to the SMTP relay (TLS without certificate checks), and
from the outbox table after delivery.

A real aiosmtpd server that requires STARTTLS and presents a self-signed certificate (made here
with ``cryptography``): the relay refuses it unless ``POLARIS_SMTP_CA_FILE`` names the CA, then
delivers a magic link queued the way the auth service queues it (``auth/db.mjs``), and the
outbox row no longer holds the link.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import secrets
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mail import LINK_REMOVED, MailActivities
from config.settings import Settings, libpq_url
from db.engine import SessionFactory
from tests.helpers import eventually, free_port
from tests.identity.conftest import unique_email
from workflows.mail_delivery import DeliverMailInput

pytestmark = pytest.mark.timeout(120)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "polaris test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsInbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        assert session.ssl is not None, "the relay sent in clear text"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@pytest.fixture
def tls_relay(tmp_path: Path) -> Iterator[tuple[TlsInbox, int, Path]]:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox, port = TlsInbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


def relay_settings(settings: Settings, port: int, ca_file: Path | None) -> Settings:
    url = SecretStr(f"smtp://127.0.0.1:{port}?starttls=true")
    return settings.model_copy(
        update={"smtp_url": url, "smtp_ca_file": ca_file, "mail_from": "links@polaris.test"}
    )


async def queue_link(pg_url: str, to: str, url: str) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        await conn.execute(
            "INSERT INTO auth.mail_outbox (to_email, subject, body, url) VALUES (%s, %s, %s, %s)",
            (to, "Sign in to Polaris", f"Open this link to sign in:\n\n{url}\n", url),
        )
        await conn.commit()


async def outbox(pg_url: str, address: str) -> tuple[Any, ...] | None:
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute(
            "SELECT id, body, url, sent_at, delivery FROM auth.mail_outbox"
            " WHERE to_email = %s ORDER BY id DESC LIMIT 1",
            (address,),
        )
        return await cur.fetchone()


async def test_an_unverifiable_relay_gets_nothing_and_a_trusted_one_gets_the_link(
    tls_relay: tuple[TlsInbox, int, Path],
    identity_settings: Settings,
    session_factory: SessionFactory,
    pg_url: str,
) -> None:
    inbox, port, ca_file = tls_relay
    address = unique_email("tls")
    token = secrets.token_urlsafe(24)
    link = f"http://auth.test/api/auth/magic-link/verify?token={token}&callbackURL=%2F"
    await queue_link(pg_url, address, link)

    # Self-signed and no CA configured: refused for good, nothing sent, the row stays queued.
    untrusting = MailActivities(relay_settings(identity_settings, port, None), session_factory)
    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(untrusting.deliver_pending_mail, DeliverMailInput())
    assert failed.value.type == "MailMisconfigured" and failed.value.non_retryable
    assert "POLARIS_SMTP_CA_FILE" in str(failed.value)
    assert inbox.messages == []
    still = await outbox(pg_url, address)
    assert still is not None and still[3] is None

    # With the relay's CA: delivered over TLS, and the stored row loses the link.
    trusting = MailActivities(relay_settings(identity_settings, port, ca_file), session_factory)

    async def delivered() -> tuple[Any, ...] | None:
        await ActivityEnvironment().run(trusting.deliver_pending_mail, DeliverMailInput(limit=200))
        row = await outbox(pg_url, address)
        return row if row is not None and row[3] is not None else None

    _, body, url, _, delivery = await eventually(delivered, timeout=20)
    [mail] = inbox.to(address)
    assert link in mail.get_content()  # the driver got the link
    assert delivery == "smtp" and url is None
    assert token not in body and LINK_REMOVED in body  # the table did not keep it
