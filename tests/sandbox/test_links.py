"""Attack: open another customer's portal or invoice PDF on the billing sandbox by guessing ids.

A real sandbox server, driven by the official Lago client. The portal and PDF pages are opened by
drivers' browsers, so they cannot ask for the API key; they are signed capability URLs instead
(sandbox/lago/links.py): the link the API hands out works, any other one answers 404.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
from lago_python_client.client import Client
from lago_python_client.models import (
    AddOn,
    Customer,
    InvoiceFee,
    InvoiceFeesList,
    OneOffInvoice,
)

from sandbox.lago.links import LinkSigner
from tests.sandbox.conftest import API_KEY, RunningSandbox, wait_until


def opened(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def test_portal_links_are_signed_and_expire(sandbox: RunningSandbox, lago: Client) -> None:
    external_id = f"victim-{uuid.uuid4().hex[:8]}"
    lago.customers.create(Customer(external_id=external_id, name="Victim", currency="EUR"))
    link = lago.customers.portal_url(external_id)
    assert opened(link).status_code == 200  # the link the API handed out

    bare = f"{sandbox.url}/__sandbox/portal/{external_id}"
    assert opened(bare).status_code == 404  # the guess: the id alone
    query = parse_qs(urlsplit(link).query)
    other = lago.customers.portal_url(
        lago.customers.create(
            Customer(external_id=f"attacker-{uuid.uuid4().hex[:8]}", currency="EUR")
        ).external_id
    )
    # The attacker's own signature does not open the victim's page.
    borrowed = f"{bare}?{urlsplit(other).query}"
    assert opened(borrowed).status_code == 404
    # A signature made with a guessed key does not either.
    forged = LinkSigner("sandbox-key").sign(f"/__sandbox/portal/{external_id}", ttl_s=60)
    assert opened(f"{sandbox.url}{forged}").status_code == 404
    # Past its expiry the genuine link is dead (signed an hour ago, valid for a minute).
    stale = LinkSigner(API_KEY, clock=lambda: float(query["expires"][0]) - 7200).sign(
        f"/__sandbox/portal/{external_id}", ttl_s=60
    )
    assert opened(f"{sandbox.url}{stale}").status_code == 404


def test_invoice_pdfs_need_their_signed_link(sandbox: RunningSandbox, lago: Client) -> None:
    uid = uuid.uuid4().hex[:8]
    lago.add_ons.create(
        AddOn(name="Setup", code=f"setup_{uid}", amount_cents=500, amount_currency="EUR")
    )
    lago.customers.create(Customer(external_id=f"pdf-{uid}", currency="EUR"))
    invoice = lago.invoices.create(
        OneOffInvoice(
            external_customer_id=f"pdf-{uid}",
            currency="EUR",
            fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code=f"setup_{uid}", units=1)]),
        )
    )
    assert invoice is not None
    link = wait_until(lambda: lago.invoices.find(invoice.lago_id).file_url)
    assert opened(link).content.startswith(b"%PDF")
    bare = f"{sandbox.url}/__sandbox/files/invoices/{invoice.lago_id}.pdf"
    assert opened(bare).status_code == 404
    tampered = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
    assert opened(tampered).status_code == 404


def test_a_customer_id_that_needs_quoting_still_opens(lago: Client) -> None:
    external_id = f"driver+{uuid.uuid4().hex[:6]}@example.com"
    lago.customers.create(Customer(external_id=external_id, currency="EUR"))
    assert opened(lago.customers.portal_url(external_id)).status_code == 200
