"""CardLinkWorkflow: link an EV card to a driver, a Lago customer and subscription — a saga.

Steps, in order (each with its compensation, run in reverse when a later step fails):

1. ``prepare``       — card linkable? reassignment confirmed? the driver's public id (reused for a
                       known e-mail, minted otherwise).                    (nothing to undo)
2. ``lago_customer`` — upsert the Lago customer (external id = public id). undo: delete it,
                       only if this run minted the identity
3. ``lago_subscription`` — ensure the subscription (usage billing only). undo: terminate it,
                       only if this run minted the identity
4. ``auth_user``     — provision the BetterAuth user if missing.  undo: delete it if created here
5. ``mapping``       — write the user ↔ card ↔ customer mapping (deactivating a reassigned card's
                       old one).                                  undo: deactivate, restore the old
6. ``invite``        — a new user gets a magic-link invitation (a mail can't be unsent, so this
                       pivot step comes last and a failure here is not compensated)

A future step pushing the tag to SteVe is one more :class:`_Step` (with its undo) in the list
built by :meth:`CardLinkWorkflow._steps`, before ``lago_customer``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import identity as ids
    from activities.lago import (
        ACTIVITY_ENSURE_SUBSCRIPTION,
        ACTIVITY_UPSERT_CUSTOMER,
        CustomerRef,
        EnsureSubscriptionInput,
        SubscriptionRef,
        UpsertCustomerInput,
    )

CARD_LINK_WORKFLOW = "CardLink"

STEP_TIMEOUT = timedelta(seconds=30)
# Forward steps give up after a few tries so a dependency that stays down ends in compensation
# rather than a link hanging for hours; compensations try much harder.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=[
        ids.CARD_NOT_LINKABLE,
        ids.REASSIGN_REQUIRED,
        ids.AUTH_REFUSED,
        "LagoRejected",
        "LagoNotFound",
    ],
)
UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=20,
)


def card_link_workflow_id(id_tag: str) -> str:
    """One link at a time per card, under an opaque id: a digest of the idTag, so the card number
    (a bearer credential) is not what the Temporal UI, its visibility store and logs list."""
    digest = hashlib.sha256(f"card-link:{id_tag}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"card-link:{digest[:32]}"


class CardLinkInput(BaseModel):
    id_tag: str = Field(min_length=1, max_length=20)
    email: str
    name: str | None = None
    currency: str | None = "EUR"
    plan_code: str | None = None
    billing_mode: ids.BillingMode = "usage"
    replace_existing: bool = False
    invite: bool = True
    requested_by: str = "system"


class CardLinkResult(BaseModel):
    status: Literal["linked", "refused", "compensated"]
    id_tag: str
    user_id: str | None = None
    public_id: str | None = None
    mapping_id: int | None = None
    user_created: bool = False
    invited: bool = False
    lago_customer: str | None = None
    lago_subscription: str | None = None
    failed_step: str | None = None
    error_type: str | None = None
    error: str | None = None
    completed: list[str] = Field(default_factory=list)
    compensated: list[str] = Field(default_factory=list)
    compensation_failed: list[str] = Field(default_factory=list)


@dataclass
class _Step:
    name: str
    run: Callable[[], Awaitable[None]]
    undo: Callable[[], Awaitable[None]] | None = None


def _cause(err: ActivityError) -> tuple[str, str]:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    return type(cause).__name__ if cause else "ActivityError", str(cause or err)


@workflow.defn(name=CARD_LINK_WORKFLOW)
class CardLinkWorkflow:
    @workflow.init
    def __init__(self, input: CardLinkInput) -> None:
        self._input = input
        self._result = CardLinkResult(status="linked", id_tag=input.id_tag)
        self._prepared: ids.PreparedCardLink | None = None
        self._user: ids.ProvisionedUser | None = None
        self._mapping: ids.WrittenMapping | None = None

    @workflow.run
    async def run(self, input: CardLinkInput) -> CardLinkResult:
        done: list[_Step] = []
        for step in self._steps():
            try:
                await step.run()
            except ActivityError as err:
                error_type, message = _cause(err)
                self._result.failed_step = step.name
                self._result.error_type = error_type
                self._result.error = message
                self._result.status = "refused" if step.name == "prepare" else "compensated"
                await self._compensate(done)
                return self._result
            done.append(step)
            self._result.completed.append(step.name)
        return self._result

    @workflow.query(name="progress")
    def progress(self) -> CardLinkResult:
        return self._result

    # -- the step list --------------------------------------------------------------------------

    def _steps(self) -> list[_Step]:
        steps = [
            _Step("prepare", self._prepare),
            _Step("lago_customer", self._lago_customer, self._undo_lago_customer),
        ]
        if self._input.billing_mode == "usage":
            steps.append(
                _Step("lago_subscription", self._lago_subscription, self._undo_subscription)
            )
        steps += [
            _Step("auth_user", self._auth_user, self._undo_auth_user),
            _Step("mapping", self._write_mapping, self._undo_mapping),
        ]
        if self._input.invite:
            steps.append(_Step("invite", self._invite))
        return steps

    async def _compensate(self, done: list[_Step]) -> None:
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                await step.undo()
                self._result.compensated.append(step.name)
            except ActivityError:
                # Recorded for operators (the history has the cause); the other undos still run.
                self._result.compensation_failed.append(step.name)

    # -- steps ----------------------------------------------------------------------------------

    @property
    def _public_id(self) -> str:
        assert self._prepared is not None
        return self._prepared.public_id

    async def _prepare(self) -> None:
        self._prepared = await workflow.execute_activity(
            ids.ACTIVITY_PREPARE_CARD_LINK,
            ids.PrepareCardLinkInput(
                id_tag=self._input.id_tag,
                email=self._input.email,
                replace_existing=self._input.replace_existing,
            ),
            result_type=ids.PreparedCardLink,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._result.public_id = self._prepared.public_id

    async def _lago_customer(self) -> None:
        customer = await workflow.execute_activity(
            ACTIVITY_UPSERT_CUSTOMER,
            UpsertCustomerInput(
                public_id=self._public_id,
                name=self._input.name,
                email=self._input.email,
                currency=self._input.currency,
            ),
            result_type=CustomerRef,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._result.lago_customer = customer.external_id

    async def _undo_lago_customer(self) -> None:
        if self._prepared is None or not self._prepared.fresh_identity:
            return
        await self._undo(
            ids.ACTIVITY_LAGO_DISCARD_CUSTOMER, ids.LagoUndoInput(external_id=self._public_id)
        )

    async def _lago_subscription(self) -> None:
        subscription = await workflow.execute_activity(
            ACTIVITY_ENSURE_SUBSCRIPTION,
            EnsureSubscriptionInput(public_id=self._public_id, plan_code=self._input.plan_code),
            result_type=SubscriptionRef,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._result.lago_subscription = subscription.external_id

    async def _undo_subscription(self) -> None:
        if self._prepared is None or not self._prepared.fresh_identity:
            return
        if self._result.lago_subscription:
            await self._undo(
                ids.ACTIVITY_LAGO_TERMINATE_SUBSCRIPTION,
                ids.LagoUndoInput(external_id=self._result.lago_subscription),
            )

    async def _auth_user(self) -> None:
        self._user = await workflow.execute_activity(
            ids.ACTIVITY_PROVISION_USER,
            ids.ProvisionUserInput(email=self._input.email, name=self._input.name),
            result_type=ids.ProvisionedUser,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._result.user_id = self._user.user_id
        self._result.user_created = self._user.created

    async def _undo_auth_user(self) -> None:
        if self._user is not None and self._user.created:
            await self._undo(
                ids.ACTIVITY_DELETE_PROVISIONED_USER,
                ids.DeleteProvisionedUserInput(user_id=self._user.user_id),
            )

    async def _write_mapping(self) -> None:
        assert self._user is not None
        self._mapping = await workflow.execute_activity(
            ids.ACTIVITY_WRITE_MAPPING,
            ids.WriteMappingInput(
                id_tag=self._input.id_tag,
                user_id=self._user.user_id,
                public_id=self._public_id,
                email=self._input.email,
                billing_mode=self._input.billing_mode,
                lago_customer_external_id=self._result.lago_customer,
                lago_subscription_external_id=self._result.lago_subscription,
                replace_existing=self._input.replace_existing,
                requested_by=self._input.requested_by,
            ),
            result_type=ids.WrittenMapping,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._result.mapping_id = self._mapping.mapping_id

    async def _undo_mapping(self) -> None:
        if self._mapping is not None:
            await self._undo(
                ids.ACTIVITY_REVERT_MAPPING,
                ids.RevertMappingInput(
                    mapping_id=self._mapping.mapping_id,
                    replaced_mapping_id=self._mapping.replaced_mapping_id,
                    created=self._mapping.created,
                ),
            )

    async def _invite(self) -> None:
        if self._user is None or not self._user.created:
            return  # an existing driver already has a way in
        try:
            self._result.invited = await workflow.execute_activity(
                ids.ACTIVITY_INVITE_USER,
                ids.InviteUserInput(email=self._input.email),
                result_type=bool,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        except ActivityError as err:
            # The link stands; the driver can still ask for a magic link themselves.
            self._result.invited = False
            self._result.error_type, self._result.error = _cause(err)

    async def _undo(self, activity: str, arg: BaseModel) -> None:
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=UNDO_RETRY
        )


__all__ = [
    "CARD_LINK_WORKFLOW",
    "CardLinkInput",
    "CardLinkResult",
    "CardLinkWorkflow",
    "card_link_workflow_id",
]
