"""A workflow subscribed to charger events in the registry tests (its own module: the workflow
sandbox re-imports it)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

WATCHER = "TestConnectorWatcher"
WATCH_KIND = "test_connector_watch"


@workflow.defn(name=WATCHER)
class ConnectorWatcher:
    """Records every charger event it is signalled."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.input: dict[str, Any] = {}

    @workflow.run
    async def run(self, input: dict[str, Any]) -> None:
        self.input = input
        await workflow.wait_condition(lambda: len(self.events) >= 100)

    @workflow.signal(name=WATCH_KIND)
    def watch(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    @workflow.query
    def seen(self) -> list[dict[str, Any]]:
        return self.events

    @workflow.query
    def started_with(self) -> dict[str, Any]:
        return self.input
