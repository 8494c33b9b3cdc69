"""Identity activities: the steps (and compensations) of the card-link saga.

Every activity is at-least-once and idempotent by business key: the card's idTag, the user's
e-mail, the user's public id. Refusals that retrying cannot fix are non-retryable
``ApplicationError`` types: ``CardNotLinkable``, ``ReassignRequired``, ``AuthServiceRefused``.
The Lago steps are :class:`activities.lago.LagoBilling`'s own activities; only their
compensations live here.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.auth_client import AuthServiceClient, AuthServiceRefused, AuthServiceUnavailable
from activities.lago_client import LagoError, LagoNotFound, call_lago, make_lago_client
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog, EvCard, UserMapping
from domain.ids import PUBLIC_ID_BYTES, public_id_from_bytes

log = logging.getLogger("polaris.identity")

ACTIVITY_PREPARE_CARD_LINK = "identity_prepare_card_link"
ACTIVITY_PROVISION_USER = "identity_provision_user"
ACTIVITY_DELETE_PROVISIONED_USER = "identity_delete_provisioned_user"
ACTIVITY_INVITE_USER = "identity_invite_user"
ACTIVITY_WRITE_MAPPING = "identity_write_mapping"
ACTIVITY_REVERT_MAPPING = "identity_revert_mapping"
ACTIVITY_LAGO_TERMINATE_SUBSCRIPTION = "identity_lago_terminate_subscription"
ACTIVITY_LAGO_DISCARD_CUSTOMER = "identity_lago_discard_customer"

CARD_NOT_LINKABLE = "CardNotLinkable"
REASSIGN_REQUIRED = "ReassignRequired"
AUTH_REFUSED = "AuthServiceRefused"

BillingMode = Literal["usage", "per_session"]


class PrepareCardLinkInput(BaseModel):
    id_tag: str = Field(min_length=1, max_length=20)
    email: str
    replace_existing: bool = False


class PreparedCardLink(BaseModel):
    public_id: str
    # True when this run minted the public id: the Lago customer and subscription are new
    # and are undone on compensation; an existing driver's are left alone.
    fresh_identity: bool
    current_user_id: str | None = None


class ProvisionUserInput(BaseModel):
    email: str
    name: str | None = None


class ProvisionedUser(BaseModel):
    user_id: str
    created: bool


class DeleteProvisionedUserInput(BaseModel):
    user_id: str


class InviteUserInput(BaseModel):
    email: str


class WriteMappingInput(BaseModel):
    id_tag: str
    user_id: str
    public_id: str
    email: str
    billing_mode: BillingMode = "usage"
    lago_customer_external_id: str | None = None
    lago_subscription_external_id: str | None = None
    replace_existing: bool = False
    requested_by: str = "system"


class WrittenMapping(BaseModel):
    mapping_id: int
    replaced_mapping_id: int | None = None
    created: bool


class RevertMappingInput(BaseModel):
    mapping_id: int
    replaced_mapping_id: int | None = None
    created: bool = True


class LagoUndoInput(BaseModel):
    external_id: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


class IdentityActivities:
    """Built once per worker; ``http`` is created lazily per event loop."""

    def __init__(self, settings: Settings, session_factory: SessionFactory) -> None:
        self._settings = settings
        self._sessions = session_factory
        self._lago: Any = None

    def _auth(self, http: httpx.AsyncClient) -> AuthServiceClient:
        return AuthServiceClient.for_caller(http, self._settings, "worker")

    def _lago_client(self) -> Any:
        if self._lago is None:
            self._lago = make_lago_client(self._settings)
        return self._lago

    # -- prepare ------------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_PREPARE_CARD_LINK)
    async def prepare_card_link(self, input: PrepareCardLinkInput) -> PreparedCardLink:
        email = normalize_email(input.email)
        async with self._sessions() as db:
            card = await db.get(EvCard, input.id_tag)
            if card is None:
                raise ApplicationError(
                    f"no EV card {input.id_tag!r}", type=CARD_NOT_LINKABLE, non_retryable=True
                )
            if card.lost_at is not None:
                raise ApplicationError(
                    "the card was reported lost", type=CARD_NOT_LINKABLE, non_retryable=True
                )
            current = await db.scalar(
                select(UserMapping).where(UserMapping.id_tag == input.id_tag, UserMapping.is_active)
            )
            if (
                current is not None
                and normalize_email(current.email or "") != email
                and not input.replace_existing
            ):
                raise ApplicationError(
                    "the card is linked to another user; confirm the reassignment",
                    type=REASSIGN_REQUIRED,
                    non_retryable=True,
                )
            known = await db.scalar(
                select(UserMapping.public_id)
                .where(func.lower(UserMapping.email) == email)
                .order_by(UserMapping.is_active.desc(), UserMapping.id.desc())
                .limit(1)
            )
        if known is not None:
            return PreparedCardLink(
                public_id=known,
                fresh_identity=False,
                current_user_id=current.user_id if current else None,
            )
        # Minted here, recorded in the workflow's history: a replay reuses it.
        return PreparedCardLink(
            public_id=public_id_from_bytes(os.urandom(PUBLIC_ID_BYTES)),
            fresh_identity=True,
            current_user_id=current.user_id if current else None,
        )

    # -- BetterAuth user ------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_PROVISION_USER)
    async def provision_user(self, input: ProvisionUserInput) -> ProvisionedUser:
        async with httpx.AsyncClient(timeout=10.0) as http:
            try:
                user = await self._auth(http).ensure_user(
                    normalize_email(input.email), name=input.name
                )
            except AuthServiceRefused as exc:
                raise ApplicationError(str(exc), type=AUTH_REFUSED, non_retryable=True) from exc
            except AuthServiceUnavailable as exc:
                raise ApplicationError(str(exc), type="AuthServiceUnavailable") from exc
        return ProvisionedUser(user_id=str(user["id"]), created=bool(user.get("created")))

    @activity.defn(name=ACTIVITY_DELETE_PROVISIONED_USER)
    async def delete_provisioned_user(self, input: DeleteProvisionedUserInput) -> bool:
        async with httpx.AsyncClient(timeout=10.0) as http:
            try:
                return await self._auth(http).delete_user(input.user_id)
            except AuthServiceUnavailable as exc:
                raise ApplicationError(str(exc), type="AuthServiceUnavailable") from exc

    @activity.defn(name=ACTIVITY_INVITE_USER)
    async def invite_user(self, input: InviteUserInput) -> bool:
        """Queue a magic-link invitation (a row in ``auth.mail_outbox``)."""
        async with httpx.AsyncClient(timeout=10.0) as http:
            try:
                return await self._auth(http).send_invite(normalize_email(input.email))
            except AuthServiceRefused as exc:
                raise ApplicationError(str(exc), type=AUTH_REFUSED, non_retryable=True) from exc
            except AuthServiceUnavailable as exc:
                raise ApplicationError(str(exc), type="AuthServiceUnavailable") from exc

    # -- the mapping ----------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_WRITE_MAPPING)
    async def write_mapping(self, input: WriteMappingInput) -> WrittenMapping:
        email = normalize_email(input.email)
        async with self._sessions() as db, db.begin():
            card = await db.get(EvCard, input.id_tag, with_for_update=True)
            if card is None or card.lost_at is not None:
                raise ApplicationError(
                    "the card is gone or lost", type=CARD_NOT_LINKABLE, non_retryable=True
                )
            current = await db.scalar(
                select(UserMapping).where(UserMapping.id_tag == input.id_tag, UserMapping.is_active)
            )
            values = {
                "public_id": input.public_id,
                "email": email,
                "billing_mode": input.billing_mode,
                "lago_customer_external_id": input.lago_customer_external_id,
                "lago_subscription_external_id": input.lago_subscription_external_id,
            }
            if current is not None and current.user_id == input.user_id:
                # A retried write (or a re-link of the same driver): refresh, do not duplicate.
                for key, value in values.items():
                    setattr(current, key, value)
                return WrittenMapping(mapping_id=current.id, created=False)
            replaced: int | None = None
            if current is not None:
                if not input.replace_existing:
                    raise ApplicationError(
                        "the card is linked to another user",
                        type=REASSIGN_REQUIRED,
                        non_retryable=True,
                    )
                current.is_active = False
                replaced = current.id
                await db.flush()
            mapping = UserMapping(
                user_id=input.user_id, id_tag=input.id_tag, is_active=True, **values
            )
            db.add(mapping)
            await db.flush()
            db.add(
                AuditLog(
                    actor=input.requested_by,
                    action="card.linked" if replaced is None else "card.reassigned",
                    subject=input.id_tag,
                    source="worker",
                    details={
                        "user_id": input.user_id,
                        "public_id": input.public_id,
                        "mapping_id": mapping.id,
                        "replaced_mapping_id": replaced,
                    },
                )
            )
            return WrittenMapping(mapping_id=mapping.id, replaced_mapping_id=replaced, created=True)

    @activity.defn(name=ACTIVITY_REVERT_MAPPING)
    async def revert_mapping(self, input: RevertMappingInput) -> None:
        if not input.created:
            return
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(UserMapping)
                .where(UserMapping.id == input.mapping_id)
                .values(is_active=False)
            )
            if input.replaced_mapping_id is not None:
                await db.execute(
                    update(UserMapping)
                    .where(UserMapping.id == input.replaced_mapping_id)
                    .values(is_active=True)
                )

    # -- Lago compensations -----------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_LAGO_TERMINATE_SUBSCRIPTION)
    async def lago_terminate_subscription(self, input: LagoUndoInput) -> None:
        try:
            await call_lago(self._lago_client().subscriptions.destroy, input.external_id)
        except LagoNotFound:
            return
        except LagoError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                log.warning("Lago refused to terminate %s: %s", input.external_id, exc)
                return
            raise ApplicationError(str(exc), type="LagoUnavailable") from exc

    @activity.defn(name=ACTIVITY_LAGO_DISCARD_CUSTOMER)
    async def lago_discard_customer(self, input: LagoUndoInput) -> None:
        """Delete a customer this saga created. A Lago without the endpoint (405) or a
        customer already gone (404) counts as done: a customer with no subscription bills
        nothing."""
        try:
            await call_lago(self._lago_client().customers.destroy, input.external_id)
        except LagoNotFound:
            return
        except LagoError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                log.warning("Lago refused to delete customer %s: %s", input.external_id, exc)
                return
            raise ApplicationError(str(exc), type="LagoUnavailable") from exc


__all__ = [
    "ACTIVITY_DELETE_PROVISIONED_USER",
    "ACTIVITY_INVITE_USER",
    "ACTIVITY_LAGO_DISCARD_CUSTOMER",
    "ACTIVITY_LAGO_TERMINATE_SUBSCRIPTION",
    "ACTIVITY_PREPARE_CARD_LINK",
    "ACTIVITY_PROVISION_USER",
    "ACTIVITY_REVERT_MAPPING",
    "ACTIVITY_WRITE_MAPPING",
    "AUTH_REFUSED",
    "CARD_NOT_LINKABLE",
    "REASSIGN_REQUIRED",
    "DeleteProvisionedUserInput",
    "IdentityActivities",
    "InviteUserInput",
    "LagoUndoInput",
    "PrepareCardLinkInput",
    "PreparedCardLink",
    "ProvisionUserInput",
    "ProvisionedUser",
    "RevertMappingInput",
    "WriteMappingInput",
    "WrittenMapping",
    "normalize_email",
]
