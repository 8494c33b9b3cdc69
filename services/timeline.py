"""A session's workflow history as a timeline an operator can read.

The core is pure: :func:`build_timeline` turns the history events of one or more runs (a
continue-as-new chain, oldest first) into :class:`TimelineEntry` rows: the workflow's start and
end, each signal, update, activity, timer, child workflow, continue-as-new, version marker, failed
workflow task, and the session's state changes. :func:`fetch_runs` reads the chain of runs from
Temporal; ``services/operator_views.py`` puts the two together for a session, with UI links.

One entry per activity (not one per history event): Temporal writes ``ActivityTaskStarted`` only
when the last attempt ends, so an activity's story is its scheduling, its last attempt number
and its outcome. State changes come from the ``upsert_session_read_model`` activity the workflow
runs on every change (its input carries the new state).

Payloads are summarised, never shown whole, by ``services/payload_summary.py`` (idTags as their
fingerprints, e-mail addresses masked, long values cut).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from temporalio.api.common.v1 import Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from services.payload_summary import Redactor, decode_payloads, failure_text

# The read model activity: its input is the session's state after each change.
READ_MODEL_ACTIVITY = "upsert_session_read_model"
# The marker the SDK records for each local activity (``workflow.execute_local_activity``).
LOCAL_ACTIVITY_MARKER = "core_local_activity"
ENTRY_KINDS = frozenset(
    {"workflow", "signal", "update", "activity", "timer", "child", "state", "marker", "task"}
)


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline. ``at``: when it began (scheduled, received, started);
    ``ended_at`` and ``duration_s`` for what takes time (activities, timers, updates, children)."""

    at: datetime
    kind: str  # workflow | signal | update | activity | timer | child | state | marker | task
    name: str
    status: str
    run_id: str
    event_id: int
    ended_at: datetime | None = None
    duration_s: float | None = None
    attempt: int | None = None
    summary: Any = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "name": self.name,
            "status": self.status,
            "run_id": self.run_id,
            "event_id": self.event_id,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration_s": self.duration_s,
            "attempt": self.attempt,
            "summary": self.summary,
            "message": self.message,
        }


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 3)


class _RunBuilder:
    """Folds one run's events into entries (entries that take time are completed in place)."""

    def __init__(self, run_id: str, redactor: Redactor, last_state: str | None) -> None:
        self.run_id = run_id
        self.redact = redactor
        self.entries: list[TimelineEntry] = []
        self.open: dict[int, int] = {}  # scheduling event id → index in entries
        self.updates: dict[str, int] = {}  # update id → index
        self.last_state = last_state

    def add(self, event: HistoryEvent, kind: str, name: str, status: str, **extra: Any) -> int:
        self.entries.append(
            TimelineEntry(
                at=_time(event),
                kind=kind,
                name=name,
                status=status,
                run_id=self.run_id,
                event_id=event.event_id,
                **extra,
            )
        )
        return len(self.entries) - 1

    def close(
        self,
        index: int | None,
        event: HistoryEvent,
        status: str,
        *,
        summary: Any = None,
        message: str | None = None,
        attempt: int | None = None,
    ) -> None:
        if index is None:
            return
        old = self.entries[index]
        end = _time(event)
        self.entries[index] = replace(
            old,
            status=status,
            ended_at=end,
            # A timer's duration is what it was set to; anything else's is how long it took.
            duration_s=old.duration_s if old.kind == "timer" else _seconds(old.at, end),
            attempt=attempt if attempt is not None else old.attempt,
            summary=summary if summary is not None else old.summary,
            message=self.redact.text(message) if message else old.message,
        )

    def summary(self, payloads: Payloads) -> Any:
        return self.redact.value(decode_payloads(payloads))

    def event(self, event: HistoryEvent) -> None:
        which = event.WhichOneof("attributes")
        if which is None:
            return
        handler: Callable[[HistoryEvent, Any], None] | None = getattr(
            self, "_" + which.removesuffix("_event_attributes"), None
        )
        if handler is not None:
            handler(event, getattr(event, which))

    # -- the workflow ---------------------------------------------------------------------------

    def _workflow_execution_started(self, event: HistoryEvent, a: Any) -> None:
        detail = decode_payloads(a.input)
        self.redact.collect(detail)
        status = "continued" if a.continued_execution_run_id else "started"
        self.add(event, "workflow", a.workflow_type.name, status, summary=self.redact.value(detail))

    def _workflow_execution_completed(self, event: HistoryEvent, a: Any) -> None:
        self.add(event, "workflow", "completed", "completed", summary=self.summary(a.result))

    def _workflow_execution_failed(self, event: HistoryEvent, a: Any) -> None:
        self.add(
            event, "workflow", "failed", "failed", message=self.redact.text(failure_text(a.failure))
        )

    def _workflow_execution_terminated(self, event: HistoryEvent, a: Any) -> None:
        self.add(event, "workflow", "terminated", "terminated", message=self.redact.text(a.reason))

    def _workflow_execution_timed_out(self, event: HistoryEvent, a: Any) -> None:
        self.add(event, "workflow", "timed out", "timed_out")

    def _workflow_execution_canceled(self, event: HistoryEvent, a: Any) -> None:
        self.add(event, "workflow", "canceled", "canceled")

    def _workflow_execution_continued_as_new(self, event: HistoryEvent, a: Any) -> None:
        self.add(
            event,
            "workflow",
            "continue-as-new",
            "continued_as_new",
            summary={"new_run_id": a.new_execution_run_id},
        )

    def _workflow_task_failed(self, event: HistoryEvent, a: Any) -> None:
        # A non-determinism error or a bug in the workflow code: the workflow is stuck until fixed.
        self.add(
            event,
            "task",
            "workflow task",
            "failed",
            message=self.redact.text(failure_text(a.failure)),
        )

    # -- messages -------------------------------------------------------------------------------

    def _workflow_execution_signaled(self, event: HistoryEvent, a: Any) -> None:
        self.add(event, "signal", a.signal_name, "received", summary=self.summary(a.input))

    def _workflow_execution_update_accepted(self, event: HistoryEvent, a: Any) -> None:
        request = a.accepted_request
        index = self.add(
            event,
            "update",
            request.input.name,
            "accepted",
            summary=self.summary(request.input.args),
        )
        self.updates[request.meta.update_id] = index

    def _workflow_execution_update_completed(self, event: HistoryEvent, a: Any) -> None:
        index = self.updates.get(a.meta.update_id)
        if a.outcome.HasField("failure"):
            self.close(index, event, "failed", message=failure_text(a.outcome.failure))
        else:
            self.close(index, event, "completed", summary=self.summary(a.outcome.success))

    # -- activities -----------------------------------------------------------------------------

    def _activity_task_scheduled(self, event: HistoryEvent, a: Any) -> None:
        name = a.activity_type.name
        detail = decode_payloads(a.input)
        self.redact.collect(detail)
        if name == READ_MODEL_ACTIVITY and isinstance(detail, dict):
            self._state(event, detail)
        self.open[event.event_id] = self.add(
            event, "activity", name, "scheduled", summary=self.redact.value(detail)
        )

    def _state(self, event: HistoryEvent, model: dict[str, Any]) -> None:
        state = model.get("state")
        if not isinstance(state, str) or state == self.last_state:
            return
        summary = {"from": self.last_state, "to": state}
        if model.get("end_reason"):
            summary["end_reason"] = self.redact.text(str(model["end_reason"]))
        self.add(event, "state", state, "changed", summary=summary)
        self.last_state = state

    def _activity_task_started(self, event: HistoryEvent, a: Any) -> None:
        index = self.open.get(a.scheduled_event_id)
        if index is None:
            return
        old = self.entries[index]
        message = None
        if a.HasField("last_failure"):
            message = "earlier attempt: " + failure_text(a.last_failure)
        self.entries[index] = replace(
            old,
            status="started",
            attempt=a.attempt,
            message=self.redact.text(message) if message else old.message,
        )

    def _activity_task_completed(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.scheduled_event_id), event, "completed")

    def _activity_task_failed(self, event: HistoryEvent, a: Any) -> None:
        self.close(
            self.open.get(a.scheduled_event_id), event, "failed", message=failure_text(a.failure)
        )

    def _activity_task_timed_out(self, event: HistoryEvent, a: Any) -> None:
        self.close(
            self.open.get(a.scheduled_event_id), event, "timed_out", message=failure_text(a.failure)
        )

    def _activity_task_canceled(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.scheduled_event_id), event, "canceled")

    # -- timers, children, markers --------------------------------------------------------------

    def _timer_started(self, event: HistoryEvent, a: Any) -> None:
        timeout = a.start_to_fire_timeout.ToTimedelta().total_seconds()
        self.open[event.event_id] = self.add(
            event, "timer", f"timer {a.timer_id}", "started", duration_s=timeout
        )

    def _timer_fired(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.started_event_id), event, "fired")

    def _timer_canceled(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.started_event_id), event, "canceled")

    def _start_child_workflow_execution_initiated(self, event: HistoryEvent, a: Any) -> None:
        self.open[event.event_id] = self.add(
            event,
            "child",
            a.workflow_type.name,
            "initiated",
            summary={"workflow_id": self.redact.text(a.workflow_id)},
        )

    def _start_child_workflow_execution_failed(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.initiated_event_id), event, "start_failed")

    def _child_workflow_execution_started(self, event: HistoryEvent, a: Any) -> None:
        index = self.open.get(a.initiated_event_id)
        if index is not None:
            old = self.entries[index]
            summary = {**(old.summary or {}), "run_id": a.workflow_execution.run_id}
            self.entries[index] = replace(old, status="started", summary=summary)

    def _child_workflow_execution_completed(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.initiated_event_id), event, "completed")

    def _child_workflow_execution_failed(self, event: HistoryEvent, a: Any) -> None:
        self.close(
            self.open.get(a.initiated_event_id), event, "failed", message=failure_text(a.failure)
        )

    def _child_workflow_execution_timed_out(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.initiated_event_id), event, "timed_out")

    def _child_workflow_execution_canceled(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.initiated_event_id), event, "canceled")

    def _child_workflow_execution_terminated(self, event: HistoryEvent, a: Any) -> None:
        self.close(self.open.get(a.initiated_event_id), event, "terminated")

    def _marker_recorded(self, event: HistoryEvent, a: Any) -> None:
        if a.marker_name == LOCAL_ACTIVITY_MARKER:
            self._local_activity(event, a)
            return
        # Version markers (workflow.patched): which code path this execution took.
        if a.marker_name != "core_patch":
            return
        data = decode_payloads(a.details["patch-data"]) if "patch-data" in a.details else None
        patch = data.get("id") if isinstance(data, dict) else None
        self.add(event, "marker", str(patch or a.marker_name), "recorded")

    def _local_activity(self, event: HistoryEvent, a: Any) -> None:
        """A local activity ran inside a workflow task: its marker records what ran, its result
        or its failure (never its input). The read model's write returns the state it wrote."""
        data = decode_payloads(a.details["data"]) if "data" in a.details else None
        meta = data if isinstance(data, dict) else {}
        name = str(meta.get("activity_type") or "local activity")
        result = decode_payloads(a.details["result"]) if "result" in a.details else None
        self.redact.collect(result)
        if name == READ_MODEL_ACTIVITY and isinstance(result, dict):
            self._state(event, result)
        failed = a.HasField("failure")
        self.add(
            event,
            "activity",
            name,
            "failed" if failed else "completed",
            attempt=meta.get("attempt"),
            summary=None if failed else self.redact.value(result),
            message=self.redact.text(failure_text(a.failure)) if failed else None,
        )


def build_timeline(
    runs: Sequence[tuple[str, Sequence[HistoryEvent]]], redactor: Redactor
) -> list[TimelineEntry]:
    """Entries of a chain of runs (oldest run first), in history order within each run."""
    entries: list[TimelineEntry] = []
    state: str | None = None
    for run_id, events in runs:
        builder = _RunBuilder(run_id, redactor, state)
        for event in events:
            builder.event(event)
        # Time order within a run: a signal that arrived while a workflow task ran is written
        # after that task's commands, though it came first and caused them.
        entries.extend(sorted(builder.entries, key=lambda e: e.at))
        state = builder.last_state
    return entries


def run_id_of(events: Sequence[HistoryEvent]) -> str:
    """The run's id as its first event records it (for histories loaded from JSON)."""
    for event in events[:1]:
        if event.HasField("workflow_execution_started_event_attributes"):
            return str(event.workflow_execution_started_event_attributes.original_execution_run_id)
    return ""


def ui_link(base: str | None, namespace: str, workflow_id: str, run_id: str) -> str | None:
    if not base:
        return None
    return (
        f"{base.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/"
        f"{quote(workflow_id, safe='')}/{quote(run_id, safe='')}/history"
    )


MAX_RUNS = 100


async def fetch_runs(client: Client, workflow_id: str) -> list[tuple[str, Sequence[HistoryEvent]]]:
    """The histories of a workflow's chain of runs, first run first, following continue-as-new.

    The latest run's start event names the chain's first run; from there each run that continued
    as new names the next one.
    """
    description = await client.get_workflow_handle(workflow_id).describe()
    latest_run = description.run_id
    latest = await client.get_workflow_handle(workflow_id, run_id=latest_run).fetch_history()
    first = latest.events[0].workflow_execution_started_event_attributes.first_execution_run_id
    if not first or first == latest_run:
        return [(latest_run, latest.events)]
    runs: list[tuple[str, Sequence[HistoryEvent]]] = []
    run_id = first
    while run_id and len(runs) < MAX_RUNS:
        if run_id == latest_run:
            runs.append((run_id, latest.events))
            break
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append((run_id, history.events))
        last = history.events[-1] if history.events else None
        if last is None or not last.HasField(
            "workflow_execution_continued_as_new_event_attributes"
        ):
            break
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs
