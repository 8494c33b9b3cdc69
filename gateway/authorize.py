"""A tap (Authorize): local decision first, then the workflow's pre-authorization within budget.

Rejections are answered at once and audited. An accepted tap does update-with-start on the
session workflow; if Temporal is slow or down the local decision stands (fail-open only for cards
PostgreSQL knows to be good) and the StartTransaction that follows starts the workflow through
the outbox (its ``transaction_started`` row is a signal-with-start carrying origin ``tap``).
Either way the tap is remembered in ``session_intents`` so that StartTransaction finds the
workflow id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from config.settings import Settings
from db.engine import SessionFactory
from db.identity_models import SCAN_LOGIN, SCAN_REGISTER
from db.models import AuditLog
from gateway import intents
from gateway.late_refusal import late_refusal
from gateway.local_auth import LocalDecision, decide
from gateway.scan_intercept import (
    intercept_registration,
    lock_card_and_read_arms,
    record_login_tap,
)
from gateway.temporal_link import TemporalLink
from gateway.transactions import tighter
from workflows.messages import (
    SESSION_WORKFLOW,
    UPDATE_PRE_AUTHORIZE,
    AuthorizationStatus,
    PreAuthorizeInput,
    PreAuthorizeResult,
    SessionInput,
    tap_workflow_id,
)

log = logging.getLogger(__name__)

# How long a tap waits for its StartTransaction (OCPP ConnectionTimeOut, typical default).
DEFAULT_TAP_TTL = timedelta(minutes=3)
# Under overload Temporal can answer slower than the Authorize budget for every tap. After this
# many misses in a row the gateway stops making chargers wait for SKIP_WAITING_S (a half-open
# breaker: the next tap after it waits again), while the workflows still start in the background.
BUDGET_MISSES_BEFORE_SKIP = 3
SKIP_WAITING_S = 15.0
# How long a pre-authorization may take in the background before its answer no longer counts.
BACKGROUND_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    status: AuthorizationStatus
    source: str  # local | workflow | local-fallback
    workflow_id: str | None = None
    parent_id_tag: str | None = None
    expiry_date: datetime | None = None


class Authorizer:
    def __init__(
        self,
        sf: SessionFactory,
        link: TemporalLink,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        tap_ttl: timedelta = DEFAULT_TAP_TTL,
        on_late_refusal: Callable[[], None] = lambda: None,
    ) -> None:
        self._sf = sf
        self._link = link
        self._settings = settings
        self._clock = clock
        self._tap_ttl = tap_ttl
        # Called after a late refusal queued an outbox row (the gateway wakes its relay).
        self._on_late_refusal = on_late_refusal
        self._background: set[asyncio.Task[None]] = set()
        self._misses = 0
        self._skip_until = 0.0

    async def authorize(self, charge_box_id: str, id_tag: str) -> AuthOutcome:
        now = self._clock()
        workflow_id = tap_workflow_id(charge_box_id, now, secrets.token_hex(8))
        async with self._sf() as s:
            # The card's lock and whether anyone armed this charger, in one round trip.
            armed = await lock_card_and_read_arms(s, id_tag, charge_box_id)
            # An operator's tap-to-add takes the tap: Blocked, no session.
            if SCAN_REGISTER in armed and await intercept_registration(s, charge_box_id, id_tag):
                return AuthOutcome("Blocked", "scan")
            local = await decide(s, id_tag, now, locked=True)
            # A QR sign-in only records the tap; the answer below is what it would be anyway,
            # so arming a charger can never deny anyone a charge.
            if SCAN_LOGIN in armed and (local.accepted or local.status == "ConcurrentTx"):
                await record_login_tap(s, charge_box_id, id_tag)
            if local.accepted:
                # The tap is remembered in the decision's own transaction, with the local answer;
                # the rare workflow answer that tightens it is written after the budget (below).
                # The charger only sends its StartTransaction after it has been answered, so the
                # start always reads the final status.
                await intents.remember(
                    s,
                    workflow_id=workflow_id,
                    charge_box_id=charge_box_id,
                    id_tag=id_tag,
                    origin="tap",
                    auth_status=local.status,
                    now=now,
                    ttl=self._tap_ttl,
                )
                await s.commit()
        if not local.accepted:
            await self._audit(charge_box_id, id_tag, local.status, local.reason, "local")
            return AuthOutcome(local.status, "local", parent_id_tag=local.parent_id_tag)
        update = self._start_pre_authorize(workflow_id, charge_box_id, id_tag, local)
        answer = await self._within_budget(update, workflow_id)
        if answer is None:
            status: AuthorizationStatus = local.status
            source = "local-fallback"
            parent, expiry = local.parent_id_tag, local.expiry_date
        else:
            status = tighter(local.status, answer.status)
            source = "workflow"
            parent = answer.parent_id_tag or local.parent_id_tag
            expiry = answer.expiry_date or local.expiry_date
        if status != local.status:
            async with self._sf.begin() as s:
                await intents.set_status(
                    s,
                    workflow_id=workflow_id,
                    charge_box_id=charge_box_id,
                    id_tag=id_tag,
                    auth_status=status,
                )
                reason = (answer.reason if answer else None) or "pre_authorization"
                s.add(_audit_row(charge_box_id, id_tag, status, reason, source))
        if answer is None and update is not None:
            # Answered before the workflow: its answer still counts when it comes (late_refusal).
            self._track(
                asyncio.create_task(
                    self._settle_late(update, workflow_id, charge_box_id, id_tag, status)
                )
            )
        return AuthOutcome(status, source, workflow_id, parent, expiry)

    @property
    def waiting_for_workflow(self) -> bool:
        """False while taps are answered locally because Temporal kept missing the budget."""
        return time.monotonic() >= self._skip_until

    def _start_pre_authorize(
        self, workflow_id: str, charge_box_id: str, id_tag: str, local: LocalDecision
    ) -> asyncio.Task[object] | None:
        """The workflow's start and pre-authorization, running from now on (None: no Temporal)."""
        client = self._link.client
        if client is None:
            return None
        update = self._update_with_start(client, workflow_id, charge_box_id, id_tag, local)
        task: asyncio.Task[object] = asyncio.create_task(update)
        return task

    async def _within_budget(
        self, update: asyncio.Task[object] | None, workflow_id: str
    ) -> PreAuthorizeResult | None:
        """The workflow's answer if it comes within the budget; None otherwise (the update goes
        on: it is never cancelled by the budget, only by :data:`BACKGROUND_TIMEOUT_S`)."""
        if update is None:
            return None
        if not self.waiting_for_workflow:
            # Temporal has been missing the budget: answer the charger from the local decision at
            # once, and let the workflow start and pre-authorize in the background.
            return None
        done, _ = await asyncio.wait({update}, timeout=self._settings.authorize_budget_s)
        if not done:
            self._missed(workflow_id, TimeoutError("over the Authorize budget"))
            return None
        exc = update.exception()
        if exc is not None:
            self._missed(workflow_id, exc)
            return None
        self._misses = 0
        result = update.result()
        return result if isinstance(result, PreAuthorizeResult) else None

    async def _settle_late(
        self,
        update: asyncio.Task[object],
        workflow_id: str,
        charge_box_id: str,
        id_tag: str,
        answered: AuthorizationStatus,
    ) -> None:
        """The workflow answered after the charger was: a refusal still stops the session."""
        try:
            result = await asyncio.wait_for(update, BACKGROUND_TIMEOUT_S)
        except Exception as exc:
            log.info("background pre_authorize of %s did not complete: %r", workflow_id, exc)
            return
        if not isinstance(result, PreAuthorizeResult) or tighter(answered, result.status) == (
            answered
        ):
            return
        log.warning(
            "pre_authorize of %s refused the tap after it was answered %s: %s",
            workflow_id,
            answered,
            result.status,
        )
        try:
            await late_refusal(
                self._sf,
                workflow_id=workflow_id,
                charge_box_id=charge_box_id,
                id_tag=id_tag,
                status=result.status,
                reason=result.reason or "pre_authorization",
                now=self._clock(),
            )
        except Exception as exc:
            # Not recorded: the session goes on as the charger was told (and is audited below).
            log.error("late refusal of %s not recorded: %r", workflow_id, exc)
            return
        self._on_late_refusal()

    async def _update_with_start(
        self,
        client: Client,
        workflow_id: str,
        charge_box_id: str,
        id_tag: str,
        local: LocalDecision,
    ) -> object:
        operation: WithStartWorkflowOperation[object, object] = WithStartWorkflowOperation(
            SESSION_WORKFLOW,
            SessionInput(
                charge_box_id=charge_box_id,
                id_tag=id_tag,
                origin="tap",
                requested_at=self._clock(),
                **self._settings.session_timers(),
            ),
            id=workflow_id,
            task_queue=self._settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        try:
            return await client.execute_update_with_start_workflow(
                UPDATE_PRE_AUTHORIZE,
                PreAuthorizeInput(
                    id_tag=id_tag, charge_box_id=charge_box_id, local_status=local.status
                ),
                start_workflow_operation=operation,
                result_type=PreAuthorizeResult,
            )
        except BaseException:
            self._reap(operation)
            raise

    def _reap(self, operation: WithStartWorkflowOperation[object, object]) -> None:
        """Collect the start operation's outcome after an abandoned update (budget passed), so
        its future is retrieved instead of reported as a never-retrieved exception."""

        async def collect() -> None:
            try:
                await asyncio.wait_for(operation.workflow_handle(), BACKGROUND_TIMEOUT_S)
            except BaseException as exc:
                log.debug("start of an abandoned pre_authorize: %r", exc)

        self._track(asyncio.create_task(collect()))

    async def close(self) -> None:
        """Cancel background pre-authorizations (the workflows already started carry on)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _missed(self, workflow_id: str, exc: BaseException) -> None:
        """A pre-authorization missed the budget; after a few in a row, stop waiting a while."""
        self._misses += 1
        # The session's (opaque) workflow id says which tap, without the idTag.
        log.warning("pre_authorize of %s fell back to the local decision: %r", workflow_id, exc)
        if self._misses >= BUDGET_MISSES_BEFORE_SKIP:
            self._skip_until = time.monotonic() + SKIP_WAITING_S
            self._misses = 0
            log.warning(
                "Temporal missed the Authorize budget %d times in a row: answering taps from the "
                "local decision for %.0f s while pre-authorization runs in the background",
                BUDGET_MISSES_BEFORE_SKIP,
                SKIP_WAITING_S,
            )

    async def _audit(
        self, charge_box_id: str, id_tag: str, status: str, reason: str, source: str
    ) -> None:
        async with self._sf.begin() as s:
            s.add(_audit_row(charge_box_id, id_tag, status, reason, source))


def _audit_row(charge_box_id: str, id_tag: str, status: str, reason: str, source: str) -> AuditLog:
    return AuditLog(
        actor=f"charger:{charge_box_id}",
        action="authorize.rejected",
        subject=id_tag,
        source="gateway",
        details={"status": status, "reason": reason, "decided_by": source},
    )
