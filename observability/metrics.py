"""The metric catalogue: every Prometheus metric Polaris defines, in one place.

All metrics live in the default ``prometheus_client`` registry of the process; each process only
moves the ones it owns (the gateway its ``polaris_gateway_*``, the worker ``polaris_lago_*`` and
``polaris_billing_*``, the API ``polaris_api_*``). Labels are bounded sets: an OCPP action, a
result, a reason, an outcome, a route template. Never a chargeBoxId, an idTag or a user.

Counters and histograms are cheap enough for the gateway's hot path (a lock and an addition);
gauges that need the database (outbox lag, unsent billing rows, the webhook breaker) are
refreshed when Prometheus scrapes (:class:`observability.http.ObservabilityServer`), not per frame.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Seconds: a journal write is milliseconds; a command round trip up to the activity's timeout.
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMMAND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# -- gateway ------------------------------------------------------------------------------------
CHARGERS_CONNECTED = Gauge(
    "polaris_gateway_chargers_connected", "Charger WebSocket connections open on this gateway."
)
FRAMES = Counter(
    "polaris_gateway_frames_total",
    "OCPP frames received from chargers, by action and result (ok, call_error, rejected, "
    "answer, dropped).",
    ["action", "result"],
)
HANDSHAKE_FAILURES = Counter(
    "polaris_gateway_handshake_failures_total",
    "WebSocket handshakes refused, by reason.",
    ["reason"],
)
JOURNAL_WRITE = Histogram(
    "polaris_gateway_journal_write_seconds",
    "Duration of the PostgreSQL write that journals one charger message, by action.",
    ["action"],
    buckets=DB_BUCKETS,
)
OUTBOX_UNDELIVERED = Gauge(
    "polaris_gateway_outbox_undelivered_rows", "gateway_outbox rows not yet delivered to Temporal."
)
OUTBOX_OLDEST_AGE = Gauge(
    "polaris_gateway_outbox_oldest_undelivered_age_seconds",
    "Age of the oldest undelivered gateway_outbox row (0 when none).",
)
OUTBOX_DELIVERIES = Counter(
    "polaris_gateway_outbox_deliveries_total",
    "Outbox rows the relay handed to Temporal, by kind and result (delivered, dropped, failed, "
    "superseded: a later row of the same workflow made it pointless, not signalled).",
    ["kind", "result"],
)
COMMAND_ROUND_TRIP = Histogram(
    "polaris_gateway_command_seconds",
    "send_charger_command: from the activity's start to the charger's answer, by action and "
    "outcome.",
    ["action", "outcome"],
    buckets=COMMAND_BUCKETS,
)

# -- worker -------------------------------------------------------------------------------------
LAGO_REQUESTS = Counter(
    "polaris_lago_requests_total",
    "Calls to the Lago API, by client operation and outcome (ok, unavailable, rejected, "
    "not_found).",
    ["operation", "outcome"],
)
BILLING_UNSENT = Gauge(
    "polaris_billing_unsent_rows", "billing_events rows not (yet) accepted by Lago."
)
BILLING_UNSENT_OLDEST_AGE = Gauge(
    "polaris_billing_unsent_oldest_age_seconds",
    "Age of the oldest billing_events row not accepted by Lago (0 when none).",
)
WEBHOOK_BREAKER_OPEN = Gauge(
    "polaris_lago_webhook_breaker_open",
    "1 while the inbound Lago webhook circuit breaker is open (webhooks stored, not processed).",
)
WEBHOOK_BREAKER_FAILURES = Gauge(
    "polaris_lago_webhook_breaker_consecutive_failures",
    "Consecutive webhook processing failures counted by the breaker.",
)
WORKER_POLLING = Gauge(
    "polaris_worker_polling", "1 while Temporal has seen this worker's pollers recently."
)

# -- API ----------------------------------------------------------------------------------------
API_REQUESTS = Counter(
    "polaris_api_requests_total",
    "HTTP requests answered by the API, by method, route template and status class.",
    ["method", "route", "status"],
)
API_LATENCY = Histogram(
    "polaris_api_request_seconds",
    "HTTP request duration in the API, by method and route template.",
    ["method", "route"],
    buckets=DB_BUCKETS,
)


def metric_names(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``… included)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
        # Families with no sample yet (a labelled counter never incremented): the usual suffixes.
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
    return names
