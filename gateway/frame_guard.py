"""The frame shell of a charger connection: what arrives is rationed, checked and matched before
the ``ocpp`` library sees it.

- **Rate**: each frame costs a token (:class:`~gateway.frame_limits.FrameRateLimiter`); over the
  budget the socket is not read for a while, and a connection that stays over it is closed with
  1008 (policy violation).
- **Calls** are checked by :func:`~gateway.frames.check_frame` and answered with the precise
  CallError when they break OCPP 1.6.
- **Answers** (CallResult / CallError) are passed on only when their unique id belongs to a call
  of ours still waiting. The library queues every answer it is given and its ``call()`` walks that
  queue recursively: forged answers used to pile up without bound (memory) and make the next
  command fail with ``RecursionError``.

Poison frames are logged at DEBUG one by one and at WARNING at most once per
:data:`REPORT_INTERVAL_S` per connection, with idTags fingerprinted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ocpp.v16 import ChargePoint as OcppChargePoint
from websockets.frames import CloseCode

from config.settings import Settings
from gateway.frame_limits import FrameRateLimiter, LogThrottle
from gateway.frames import FrameProblem, UnusableAnswer, check_frame
from gateway.log_redaction import TagRedactor
from observability import tracing
from observability.logs import bound
from observability.metrics import FRAMES

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 10.0
FLOOD_CLOSE_REASON = "frame rate limit exceeded"


class FrameGuardedChargePoint(OcppChargePoint):  # type: ignore[misc]
    def __init__(
        self,
        charge_box_id: str,
        connection: Any,
        *,
        settings: Settings,
        tags: TagRedactor,
        response_timeout: float,
    ) -> None:
        super().__init__(charge_box_id, connection, response_timeout=response_timeout)
        self.tags = tags
        self._awaiting: set[str] = set()
        self._rate = FrameRateLimiter(
            rate_per_s=settings.gateway_max_frames_per_s,
            burst=settings.gateway_frame_burst,
            flood_close_s=settings.gateway_frame_flood_close_s,
            clock=time.monotonic,
        )
        self._reports = LogThrottle(REPORT_INTERVAL_S, time.monotonic)
        self._answered_with_error = False

    def on_frame(self) -> None:
        """Called for every frame before it is checked (the subclass notes the charger alive)."""

    async def start(self) -> None:
        while True:
            raw = await self._connection.recv()
            wait_s = self._rate.admit()
            if wait_s is None:
                log.warning(
                    "%s: closing the connection: over %s frames/s for %.0f s",
                    self.id,
                    self._rate.rate_per_s,
                    self._rate.flood_close_s,
                )
                await self._connection.close(CloseCode.POLICY_VIOLATION, FLOOD_CLOSE_REASON)
                return
            if wait_s:
                await asyncio.sleep(wait_s)
            await self.route_message(raw)

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.on_frame()
        try:
            answer_id = check_frame(raw_msg, self.route_map)
        except FrameProblem as problem:
            FRAMES.labels("unknown", "rejected").inc()
            self._poison(f"rejected with {problem.error.code}", raw_msg)
            await self._send(problem.call_error_json())
            return
        except UnusableAnswer as exc:
            FRAMES.labels("answer", "dropped").inc()
            self._poison(f"dropped ({exc})", raw_msg)
            return
        if answer_id is not None:
            if answer_id not in self._awaiting:
                FRAMES.labels("answer", "dropped").inc()
                self._poison("dropped: answers no call in flight", raw_msg)
                return
            self._awaiting.discard(answer_id)  # a second answer to the same call is dropped
            FRAMES.labels("answer", "ok").inc()
        await super().route_message(raw_msg)

    async def _handle_call(self, msg: Any) -> None:
        # check_frame() let only known actions through: the label set is bounded.
        self._answered_with_error = False
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        try:
            # MeterValues and StopTransaction name their transaction: so do their log lines.
            with (
                bound(transaction_id=payload.get("transactionId")),
                tracing.span(
                    f"ocpp {msg.action}",
                    attributes={"ocpp.action": msg.action, "ocpp.charge_box_id": self.id},
                ),
            ):
                await super()._handle_call(msg)
        except Exception:
            self._answered_with_error = True
            raise
        finally:
            FRAMES.labels(msg.action, "call_error" if self._answered_with_error else "ok").inc()

    async def _send(self, message: str) -> None:
        # The library answers a failed handler with a CallError itself: [4, ...].
        if message.startswith("[4"):
            self._answered_with_error = True
        await super()._send(message)

    async def call(
        self,
        payload: Any,
        suppress: bool = True,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        unique_id = unique_id if unique_id is not None else str(self._unique_id_generator())
        self._awaiting.add(unique_id)
        try:
            return await super().call(payload, suppress, unique_id, skip_schema_validation)
        finally:
            self._awaiting.discard(unique_id)

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:
        # The library's version recurses once per stale answer; an answer whose call was
        # cancelled (its activity timed out) can still be queued, so skip them in a loop.
        async with asyncio.timeout(timeout):
            while True:
                response = await self._response_queue.get()
                if response.unique_id == unique_id:
                    return response
                log.debug("%s: skipped a stale answer %s", self.id, response.unique_id)

    def _poison(self, what: str, raw_msg: str | bytes) -> None:
        held = self._reports.ready()
        if held is None and not log.isEnabledFor(logging.DEBUG):
            return  # a flood: nothing will be written, so nothing is redacted either
        # Redact before cutting: a cut through an idTag value would hide it from the pattern.
        shown = self.tags.redact(raw_msg if isinstance(raw_msg, str) else repr(raw_msg))[:400]
        log.debug("%s: frame %s: %s", self.id, what, shown)
        if held is not None:
            log.warning(
                "%s: frame %s (and %d more poison frames since the last report): %s",
                self.id,
                what,
                held,
                shown[:200],
            )
