"""The Temporal worker: every workflow and the activities that wrap PostgreSQL (and, later,
SteVe, Lago, BetterAuth, mail).

``python worker.py`` (or ``polaris worker``) runs it with the settings from the environment and
``runtime.json``. SIGINT/SIGTERM cancel :func:`run_worker`, which lets running activities finish
(up to a grace period) before the engine is disposed.

With ``POLARIS_WORKER_METRICS_PORT`` set, ``/metrics`` and ``/healthz`` (503 unless Temporal saw
this worker poll recently: ``observability/worker_health.py``) are served on that port.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.billing import BillingActivities
from activities.by_class import activities_of, activity_name  # noqa: F401  (re-exported)
from activities.firmware import FirmwareActivities
from activities.identity import IdentityActivities
from activities.idle_fee import IdleFeeActivities
from activities.invoice_links import InvoiceLinkActivities
from activities.lago import LagoBilling, check_billable_metric_at_startup
from activities.lago_webhooks import LagoWebhookActivities, breaker_state
from activities.live import LiveActivities
from activities.local_lists import LocalListActivities, LocalListDispatch
from activities.mail import MailActivities
from activities.notifications import NotificationActivities
from activities.operations import OperationActivities
from activities.reservations import ReservationActivities
from activities.retention import RetentionActivities
from activities.session_closure import SessionClosureActivities
from activities.sessions import SessionActivities
from activities.site_load import SiteLoadActivities
from activities.steve_sync import SteveSyncActivities
from activities.webhooks import WebhookActivities
from config.settings import Settings
from config.temporal import connect
from db.engine import SessionFactory, make_engine, make_session_factory
from observability import metrics
from observability.http import ObservabilityServer
from observability.temporal import install_sdk_metrics
from observability.worker_health import WorkerHealth
from services.retention import ensure_retention_schedule
from services.steve import ensure_cadence
from workflows.card_link import CardLinkWorkflow
from workflows.charger_offline import (
    CHARGER_OFFLINE_WATCH_WORKFLOW_ID,
    ChargerOfflineWatchInput,
    ChargerOfflineWatchWorkflow,
)
from workflows.charger_offline_events import (
    CHARGER_OFFLINE_EVENTS_WORKFLOW_ID,
    ChargerOfflineEventsWorkflow,
    OfflineEventsInput,
)
from workflows.charger_operation import ChargerOperationWorkflow
from workflows.charging_session import ChargingSessionWorkflow
from workflows.firmware import (
    DiagnosticsRequestWorkflow,
    FirmwareCampaignWorkflow,
    FirmwareUpdateWorkflow,
)
from workflows.idle_fee import IdleFeeWorkflow
from workflows.lago_webhook import LagoWebhookWorkflow
from workflows.local_list_messages import LocalListReconcileInput, reconcile_workflow_id
from workflows.local_list_sync import LocalListReconcileWorkflow, LocalListSyncWorkflow
from workflows.mail_delivery import (
    MAIL_DELIVERY_WORKFLOW_ID,
    MailDeliveryInput,
    MailDeliveryWorkflow,
)
from workflows.reservation import ReservationWorkflow
from workflows.retention import RetentionWorkflow
from workflows.site_load import SiteLoadWorkflow
from workflows.steve_cadence import SteveCadenceWorkflow
from workflows.steve_sync import SyncRunWorkflow
from workflows.webhook_messages import DispatcherInput, dispatcher_workflow_id
from workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatcherWorkflow

log = logging.getLogger("polaris.worker")

WORKFLOWS: list[type] = [
    ChargingSessionWorkflow,
    LagoWebhookWorkflow,
    CardLinkWorkflow,
    MailDeliveryWorkflow,
    ChargerOperationWorkflow,
    LocalListSyncWorkflow,
    LocalListReconcileWorkflow,
    FirmwareUpdateWorkflow,
    FirmwareCampaignWorkflow,
    DiagnosticsRequestWorkflow,
    ReservationWorkflow,
    ChargerOfflineWatchWorkflow,
    WebhookDispatcherWorkflow,
    WebhookDeliveryWorkflow,
    SiteLoadWorkflow,
    RetentionWorkflow,
    ChargerOfflineEventsWorkflow,
    IdleFeeWorkflow,
    SyncRunWorkflow,
    SteveCadenceWorkflow,
]
GRACEFUL_SHUTDOWN = timedelta(seconds=20)


def worker_activities(
    client: Client,
    settings: Settings,
    session_factory: SessionFactory,
    *,
    sessions: SessionActivities | None = None,
) -> list[Callable[..., Any]]:
    """Every activity the worker runs: all ``@activity.defn`` methods of its activity classes."""
    sessions = sessions or SessionActivities(
        session_factory, progress_event_interval_s=settings.session_progress_event_interval_s
    )
    closures = SessionClosureActivities(session_factory)
    billing = BillingActivities(session_factory)
    lago = LagoBilling(settings, session_factory, plan_code=settings.lago_plan_code)
    invoice_links = InvoiceLinkActivities(client, session_factory)
    webhooks = LagoWebhookActivities(
        session_factory, breaker_threshold=settings.lago_webhook_breaker_threshold
    )
    identity = IdentityActivities(settings, session_factory)
    mail = MailActivities(settings, session_factory)
    operations = OperationActivities(session_factory)
    local_lists = LocalListActivities(session_factory)
    local_list_dispatch = LocalListDispatch(client, session_factory)
    fw = FirmwareActivities(settings, session_factory)
    live = LiveActivities(session_factory)
    reservations = ReservationActivities(session_factory)
    inbox = NotificationActivities(settings, session_factory)
    outgoing = WebhookActivities(settings, session_factory, client)
    site_load = SiteLoadActivities(session_factory)
    retention = RetentionActivities(session_factory)
    idle_fee = IdleFeeActivities(settings, session_factory)
    steve_sync = SteveSyncActivities(settings, session_factory)
    return activities_of(
        sessions,
        closures,
        billing,
        lago,
        webhooks,
        invoice_links,
        identity,
        mail,
        operations,
        local_lists,
        local_list_dispatch,
        fw,
        reservations,
        inbox,
        outgoing,
        site_load,
        retention,
        live,
        idle_fee,
        steve_sync,
    )


# Modules of pure data and pure functions that every workflow run would otherwise import afresh
# inside the sandbox. The sandbox re-executes a workflow's modules for each new run (and after
# each cache eviction); building these pydantic message classes again was about half of the
# worker's CPU under load (py-spy, bench.gateway_load). Passed through, they are imported once,
# and the workflows share the very classes the gateway and the activities use. Only modules that
# hold no state and do no I/O belong here; workflow code itself stays in the sandbox.
PASSTHROUGH_MODULES = (
    "workflows.messages",
    "workflows.firmware_messages",
    "workflows.idle_fee_messages",
    "workflows.local_list_messages",
    "workflows.reservation_messages",
    "workflows.site_load_messages",
    "workflows.steve_messages",
    "workflows.webhook_messages",
    "workflows.policies",
    "workflows.session_support",
)


# The packages whose modules the sandbox re-imports for every workflow run (see below).
SANDBOXED_PACKAGES = ("workflows", "domain")


def compile_sandboxed_modules() -> None:
    """Write the bytecode caches of the modules the sandbox re-imports for every run.

    The sandbox re-executes each workflow's modules for every new run, through the normal import
    machinery: with a ``__pycache__`` that is loading bytecode, without one it is compiling the
    source again. Images commonly set ``PYTHONDONTWRITEBYTECODE`` (ours does, and so does this
    project's CI machine), so no cache was ever written and every session compiled
    ``workflows/charging_session.py`` and its mixins afresh: about half of the cost of creating a
    workflow instance (py-spy, ``bench.gateway_load --profile``). ``compileall`` writes the caches
    regardless of that setting; where the package directory is read-only they go to a private
    ``sys.pycache_prefix`` instead. Cheap when the caches are current (a stat per module).
    """
    roots = [Path(__file__).resolve().parent / name for name in SANDBOXED_PACKAGES]
    if all(compileall.compile_dir(root, quiet=2) for root in roots if root.is_dir()):
        return
    if sys.pycache_prefix is None:
        sys.pycache_prefix = tempfile.mkdtemp(prefix="polaris-pycache-")
        for root in roots:
            if root.is_dir():
                compileall.compile_dir(root, quiet=2)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every worker runs the workflows in (see :data:`PASSTHROUGH_MODULES`)."""
    compile_sandboxed_modules()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def build_worker(
    client: Client,
    settings: Settings,
    session_factory: SessionFactory,
    *,
    task_queue: str | None = None,
    sessions: SessionActivities | None = None,
) -> Worker:
    """A worker for all workflows and activities, on ``settings.temporal_task_queue`` unless
    ``task_queue`` is given (tests use a fresh queue each; ``sessions`` lets a test hold the
    session activities at a chosen moment)."""
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=worker_activities(client, settings, session_factory, sessions=sessions),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_runner=workflow_runner(),
    )


async def start_mail_delivery(
    client: Client,
    task_queue: str,
    *,
    workflow_id: str = MAIL_DELIVERY_WORKFLOW_ID,
    params: MailDeliveryInput | None = None,
) -> None:
    """Make sure the one mail relay runs (every worker asks; the first start wins)."""
    await client.start_workflow(
        MailDeliveryWorkflow.run,
        params or MailDeliveryInput(),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_local_list_reconcile(client: Client, task_queue: str) -> None:
    """Make sure this task queue's local-list reconciler runs (the first start wins)."""
    await client.start_workflow(
        LocalListReconcileWorkflow.run,
        LocalListReconcileInput(),
        id=reconcile_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_offline_events(client: Client, settings: Settings, task_queue: str) -> None:
    """Make sure the one charger-offline watch runs (every worker asks; the first start wins)."""
    await client.start_workflow(
        ChargerOfflineEventsWorkflow.run,
        OfflineEventsInput(
            interval_s=settings.charger_offline_check_s,
            silence_s=settings.heartbeat_interval_s * 3,
        ),
        id=CHARGER_OFFLINE_EVENTS_WORKFLOW_ID,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_charger_offline_watch(
    client: Client, task_queue: str, *, workflow_id: str = CHARGER_OFFLINE_WATCH_WORKFLOW_ID
) -> None:
    """Make sure the one charger-offline watch runs (every worker asks; the first start wins)."""
    await client.start_workflow(
        ChargerOfflineWatchWorkflow.run,
        ChargerOfflineWatchInput(),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_webhook_dispatcher(client: Client, task_queue: str) -> None:
    """Make sure the webhook dispatcher runs (every worker asks; the first start wins)."""
    await client.start_workflow(
        WebhookDispatcherWorkflow.run,
        DispatcherInput(),
        id=dispatcher_workflow_id(),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


_UNSENT_BILLING = text(
    "SELECT count(*) AS n, EXTRACT(EPOCH FROM now() - min(created_at)) AS age "
    "FROM billing_events WHERE sent_at IS NULL"
)


def billing_gauges(session_factory: SessionFactory) -> list[Callable[[], Awaitable[None]]]:
    """Scrape-time refreshes: unsent billing rows and the inbound webhook breaker."""

    async def unsent_billing_rows() -> None:
        async with session_factory() as db:
            row = (await db.execute(_UNSENT_BILLING)).one()
        metrics.BILLING_UNSENT.set(row.n)
        metrics.BILLING_UNSENT_OLDEST_AGE.set(float(row.age or 0))

    async def webhook_breaker() -> None:
        state = await breaker_state(session_factory)
        metrics.WEBHOOK_BREAKER_OPEN.set(1 if state.open else 0)
        metrics.WEBHOOK_BREAKER_FAILURES.set(state.consecutive_failures)

    return [unsent_billing_rows, webhook_breaker]


async def run_worker(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Connect, run the worker until cancelled, then shut down gracefully."""
    install_sdk_metrics(settings.metrics_host, settings.worker_temporal_metrics_port)
    client = await connect(settings)
    engine = make_engine(settings.require_database_url())
    try:
        session_factory = make_session_factory(engine)
        # Loud, never fatal: a misconfigured metric refuses billing, not charging.
        await check_billable_metric_at_startup(settings, session_factory)
        worker = build_worker(client, settings, session_factory)
        try:
            await start_mail_delivery(client, settings.temporal_task_queue)
        except Exception:  # never fatal: magic links wait in the outbox until a worker starts it
            log.exception("could not start the mail relay workflow %s", MAIL_DELIVERY_WORKFLOW_ID)
        try:
            await start_local_list_reconcile(client, settings.temporal_task_queue)
        except Exception:  # never fatal: the service layer starts it with its first wake-up
            log.exception("could not start the local-list reconciler")
        try:
            await start_offline_events(client, settings, settings.temporal_task_queue)
        except Exception:  # never fatal: charger.offline waits for the next worker start
            log.exception("could not start the charger-offline watch")
        try:
            await start_charger_offline_watch(client, settings.temporal_task_queue)
        except Exception:  # never fatal: the next worker start tries again
            log.exception("could not start the charger-offline watch")
        try:
            await start_webhook_dispatcher(client, settings.temporal_task_queue)
        except Exception:  # never fatal: creating an endpoint starts it too
            log.exception("could not start the webhook dispatcher")
        try:
            await ensure_retention_schedule(client, settings)
        except Exception:  # never fatal: the next worker start tries again
            log.exception("could not create or update the retention schedule")
        if settings.steve_api_url:
            try:
                await ensure_cadence(client, settings)
            except Exception:  # never fatal: a manual trigger or the next worker start does
                log.exception("could not start the SteVe sync cadence")
        health = WorkerHealth(
            client, settings.temporal_task_queue, stale_s=settings.worker_poll_stale_s
        )
        server: ObservabilityServer | None = None
        if settings.worker_metrics_port is not None:
            server = ObservabilityServer(
                settings.metrics_host,
                settings.worker_metrics_port,
                health=health.check,
                refresh=billing_gauges(session_factory),
            )
            await server.start()
        log.info("worker polling %s", settings.temporal_task_queue)
        try:
            # Worker.run() shuts the worker down (gracefully) when this task is cancelled.
            health.task = asyncio.create_task(worker.run(), name="worker-run")
            if ready is not None:
                ready.set()
            await health.task
        finally:
            if health.task is not None and not health.task.done():
                health.task.cancel()
                await asyncio.gather(health.task, return_exceptions=True)
            if server is not None:
                await server.stop()
    finally:
        await engine.dispose()


if __name__ == "__main__":
    import sys

    from cli.main import main as polaris

    # The same start-up checks as `polaris worker` (config/startup.py).
    sys.exit(polaris(["worker"]))
