"""The mail relay: send what the auth service queued in ``auth.mail_outbox``.

``deliver_pending_mail`` claims unsent rows one at a time (``FOR UPDATE SKIP LOCKED``, so two
workers never take the same row), hands each to the SMTP server named by ``POLARIS_SMTP_URL``
(stdlib ``smtplib`` in a thread) and stamps ``sent_at`` and ``delivery`` in the same
transaction. Without an SMTP URL (``polaris dev``) the row is kept for reading, logged (with the
link in dev) and marked ``delivery = 'local'``.

At-least-once, recognisably: the Message-ID is derived from the row id, so if the server took a
message but the ``sent_at`` write was lost, the retry sends the *same* message (same Message-ID)
and the receiving side can tell it is a duplicate.

Failures: a down or busy server (connection errors, 4xx) rolls the row back and raises a
retryable error; a permanent refusal of one message (5xx for its sender, recipient or data) is
recorded (``delivery = 'refused'``, ``last_error``) so it never blocks the queue; an SMTP URL that
cannot be parsed, credentials the server refuses, or a certificate that does not verify are
``MailMisconfigured`` (not retried).

TLS (``smtps://`` or STARTTLS) always verifies the server: its certificate must chain to the
system's CAs, or to ``POLARIS_SMTP_CA_FILE`` for a relay with a private CA, and name the host in
the URL. Without that, anyone on the path could read every magic link.

After a message is handed to the server (or refused for good) its link is removed from the
outbox row: the row keeps who, what and when, not a working sign-in token. Rows kept without SMTP
(``delivery = 'local'``, ``polaris dev``) keep the link: the outbox is the developer's inbox.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from db.engine import SessionFactory
from workflows.mail_delivery import (
    ACTIVITY_DELIVER_PENDING_MAIL,
    MAIL_MISCONFIGURED,
    DeliverMailInput,
    DeliverMailResult,
)

log = logging.getLogger("polaris.mail")

SMTP_TIMEOUT_S = 30.0

_CLAIM = text(
    "SELECT id, to_email, subject, body, url, created_at FROM auth.mail_outbox"
    " WHERE sent_at IS NULL ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_MARK = text(
    "UPDATE auth.mail_outbox SET sent_at = now(), delivery = :delivery, last_error = :error,"
    " body = :body, url = :url WHERE id = :id"
)
# What replaces the link in a delivered message's stored body.
LINK_REMOVED = "[link removed after delivery]"


class MailMisconfigured(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    # PEM bundle of the CA(s) to trust instead of the system's (POLARIS_SMTP_CA_FILE).
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str, *, ca_file: str | None = None) -> SmtpTarget:
        """``smtp://user:pass@host:port?starttls=true`` or ``smtps://user:pass@host:port``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise MailMisconfigured("POLARIS_SMTP_URL must look like smtp://user:pass@host:port")
        implicit_tls = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if implicit_tls else 25)
        except ValueError as exc:
            raise MailMisconfigured("POLARIS_SMTP_URL has an invalid port") from exc
        flag = (parse_qs(parts.query).get("starttls") or [""])[0].lower()
        if flag not in ("", "true", "false", "1", "0", "yes", "no"):
            raise MailMisconfigured("starttls in POLARIS_SMTP_URL must be true or false")
        # Submission port 587 means STARTTLS unless told otherwise.
        starttls = (flag in ("true", "1", "yes")) if flag else port == 587
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit_tls,
            starttls=starttls and not implicit_tls,
            ca_file=ca_file,
        )

    def tls_context(self) -> ssl.SSLContext:
        """Verify the certificate chain and the host name, as a mail client should."""
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise MailMisconfigured(
                f"POLARIS_SMTP_CA_FILE cannot be loaded: {type(exc).__name__}"
            ) from exc


def message_id(row_id: int, mail_from: str) -> str:
    """The same id for every attempt at one outbox row."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "polaris.invalid"
    return f"<polaris-mail-{row_id}@{domain}>"


def build_message(row: Any, mail_from: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = row.to_email
    msg["Subject"] = row.subject
    msg["Message-ID"] = message_id(int(row.id), mail_from)
    msg["Date"] = format_datetime(row.created_at)
    msg["X-Polaris-Outbox-Id"] = str(row.id)
    msg.set_content(row.body)
    return msg


def redact_link(body: str, url: str | None) -> str:
    """The body without the link it carried (a delivered sign-in token stays in the mailbox)."""
    return body.replace(url, LINK_REMOVED) if url else body


def _connect(target: SmtpTarget) -> smtplib.SMTP:
    conn: smtplib.SMTP
    context = target.tls_context() if target.implicit_tls or target.starttls else None
    if target.implicit_tls:
        conn = smtplib.SMTP_SSL(target.host, target.port, timeout=SMTP_TIMEOUT_S, context=context)
    else:
        conn = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT_S)
    try:
        conn.ehlo()
        if target.starttls:
            conn.starttls(context=context)
            conn.ehlo()
        if target.username is not None:
            conn.login(target.username, target.password or "")
    except BaseException:
        conn.close()
        raise
    return conn


def _permanent(exc: smtplib.SMTPException) -> bool:
    """A refusal of this one message that retrying will not change."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


class MailActivities:
    def __init__(self, settings: Settings, session_factory: SessionFactory) -> None:
        self._settings = settings
        self._sessions = session_factory

    def _target(self) -> SmtpTarget | None:
        url = self._settings.smtp_url
        if url is None or not url.get_secret_value():
            return None
        ca_file = self._settings.smtp_ca_file
        return SmtpTarget.parse(url.get_secret_value(), ca_file=str(ca_file) if ca_file else None)

    @activity.defn(name=ACTIVITY_DELIVER_PENDING_MAIL)
    async def deliver_pending_mail(self, params: DeliverMailInput) -> DeliverMailResult:
        try:
            target = self._target()
        except MailMisconfigured as exc:
            raise ApplicationError(str(exc), type=MAIL_MISCONFIGURED, non_retryable=True) from exc
        result = DeliverMailResult()
        conn: smtplib.SMTP | None = None
        try:
            for _ in range(params.limit):
                async with self._sessions() as db, db.begin():
                    row = (await db.execute(_CLAIM)).first()
                    if row is None:
                        break
                    if target is None:
                        self._keep(row)
                        delivery, error = "local", None
                        result.kept += 1
                    else:
                        if conn is None:
                            conn = await self._open(target)
                        delivery, error = await self._send(conn, row)
                        if delivery == "smtp":
                            result.sent += 1
                        else:
                            result.refused += 1
                    kept = delivery == "local"  # the developer's inbox keeps its links
                    await db.execute(
                        _MARK,
                        {
                            "delivery": delivery,
                            "error": error,
                            "id": row.id,
                            "body": row.body if kept else redact_link(row.body, row.url),
                            "url": row.url if kept else None,
                        },
                    )
                activity.heartbeat(int(row.id))
        finally:
            if conn is not None:
                await asyncio.to_thread(_quit, conn)
        return result

    def _keep(self, row: Any) -> None:
        if self._settings.env == "dev":
            log.info(
                "[dev] mail #%s to %s kept in the outbox (no POLARIS_SMTP_URL): %s — %s",
                row.id,
                row.to_email,
                row.subject,
                row.url or "(no link)",
            )
        else:
            log.warning(
                "mail #%s to %s was not sent: POLARIS_SMTP_URL is not set (kept in the outbox)",
                row.id,
                row.to_email,
            )

    async def _open(self, target: SmtpTarget) -> smtplib.SMTP:
        try:
            return await asyncio.to_thread(_connect, target)
        except smtplib.SMTPAuthenticationError as exc:
            raise ApplicationError(
                f"the SMTP server refused the credentials ({exc.smtp_code})",
                type=MAIL_MISCONFIGURED,
                non_retryable=True,
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise ApplicationError(
                f"the SMTP server's certificate did not verify ({exc.verify_message}); "
                "set POLARIS_SMTP_CA_FILE for a private CA",
                type=MAIL_MISCONFIGURED,
                non_retryable=True,
            ) from exc
        except MailMisconfigured as exc:
            raise ApplicationError(str(exc), type=MAIL_MISCONFIGURED, non_retryable=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ApplicationError(
                f"SMTP server unavailable: {type(exc).__name__}", type="MailUnavailable"
            ) from exc

    async def _send(self, conn: smtplib.SMTP, row: Any) -> tuple[str, str | None]:
        msg = build_message(row, self._settings.mail_from)
        try:
            await asyncio.to_thread(conn.send_message, msg)
        except smtplib.SMTPException as exc:
            if _permanent(exc):
                log.error("SMTP refused mail #%s to %s: %s", row.id, row.to_email, exc)
                return "refused", str(exc)[:1000]
            raise ApplicationError(
                f"SMTP server did not take mail #{row.id}: {type(exc).__name__}",
                type="MailUnavailable",
            ) from exc
        except OSError as exc:
            raise ApplicationError(
                f"SMTP connection lost at mail #{row.id}: {type(exc).__name__}",
                type="MailUnavailable",
            ) from exc
        log.info("mail #%s sent to %s", row.id, row.to_email)
        return "smtp", None


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


__all__ = [
    "MailActivities",
    "MailMisconfigured",
    "SmtpTarget",
    "build_message",
    "message_id",
    "redact_link",
]
