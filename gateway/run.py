"""`Run`: one generation, from its first event to its stored end. Every endpoint uses it:
`/v1/responses` (streaming or not), `/v1/chat/completions` and background responses.

A run owns what used to be spread over several wrappers: the assembler and the stats, the
adapter lease, the fields of the request's log line, and the store writes. `events()` is
its one iterator, and its one `finally` does the closing work in a fixed order:

1. the generation stops (the runner cancels the adapter and ends the response as cancelled
   if it had not ended);
2. a stored foreground response that was not saved yet (client gone) is stored as it ended;
3. the lease is released and the log line gets the run's figures.

The terminal batch of a stored foreground run is written to the store *before* it is
yielded, so a client can chain on a response the moment it sees it end; if that write
fails, the client sees `response.failed` (`store_unavailable`) instead of a completion
that was never kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
import structlog

from gateway.adapters.base import Delta
from gateway.errors import GatewayError
from gateway.events import TERMINAL_EVENTS, Event, ResponseFailed
from gateway.log import RequestRecord
from gateway.protocol import CustomToolCallOutput, FunctionCallOutput, LocalShellCallOutput, Response, ResponseError
from gateway.runner import RunStats, run_generation
from gateway.runtime import Lease, Runtime
from gateway.service import Prepared
from gateway.store import ResponseStore, TurnRecord
from gateway.store.conversations import turn_pairs
from gateway.store.shield import shielded
from gateway.turn import Turn

__all__ = ["DEGRADED_HEADER", "Run", "unstored"]

log = structlog.get_logger()

DEGRADED_HEADER = "x-gateway-degraded"
_TOOL_OUTPUTS = (FunctionCallOutput, CustomToolCallOutput, LocalShellCallOutput)


class Run:
    """One generation. `begin()` (which may raise before any byte), then `events()` or `collect()` once."""

    def __init__(
        self,
        prepared: Prepared,
        *,
        runtime: Runtime,
        record: RequestRecord,
        active_streams: Any,
        store: ResponseStore | None = None,
        turn: Turn | None = None,
    ) -> None:
        self.prepared = prepared
        self.assembler = prepared.assembler()
        self.stats = RunStats()
        self.background = prepared.request.background
        # Store writes happen only for `store: true` requests that came with their stored turn.
        self._store = store if prepared.request.store and turn is not None else None
        self._turn = turn
        self._runtime = runtime
        self._record = record
        self._active_streams = active_streams
        self._lease: Lease | None = None
        self._opened: AsyncIterator[Delta] | None = None
        self._saved = False
        self._store_failure: GatewayError | None = None
        self.headers: dict[str, str] = {}
        items = prepared.request.input
        record.fields.update(
            model=prepared.model.name,
            response_id=prepared.response.id,
            input_items=len(items),
            tool_outputs=sum(isinstance(item, _TOOL_OUTPUTS) for item in items),
        )
        if prepared.plan.degradations:
            record.fields["degradations"] = prepared.plan.degradations
            self.headers[DEGRADED_HEADER] = _header_value(prepared.plan.degradations)

    async def begin(self) -> None:
        """Hold the adapter; open its stream (a foreground run: an upstream that refuses or fails is still an HTTP
        error); store the response as it starts (GET shows it queued or in progress; 503 if the store is down).
        Opening and the store write overlap: for an upstream model that is one round trip less per request."""
        self._lease = self._runtime.lease(self.prepared.adapter)
        opening = None
        try:
            if not self.background:
                opening = asyncio.ensure_future(self.prepared.adapter.open(self.prepared.generation))
            try:
                await self._store_start()
            except BaseException:
                if opening is not None:
                    await _discard(opening)
                raise
            if opening is not None:
                try:
                    self._opened = await opening
                except GatewayError as exc:
                    await self._store_unopened(exc)
                    raise
        except BaseException:
            self._lease.release()
            self._lease = None
            raise

    async def _store_unopened(self, error: GatewayError) -> None:
        """The response was stored as started but its model never answered: store it failed, not in progress."""
        if self._store is None:
            return
        failure = ResponseError(code=error.code or "server_error", message=error.message)
        response = msgspec.structs.replace(self.prepared.response, status="failed", error=failure)
        with contextlib.suppress(GatewayError):
            await shielded(self._store.finish(response))

    async def _store_start(self) -> None:
        if self._store is not None and self._turn is not None:
            conversation = self._turn.conversation
            record = TurnRecord(
                response=self.prepared.response,
                input=self._turn.stored_input,
                new_item_ids=self._turn.new_item_ids,
                conversation=conversation.id if conversation else None,
                conversation_version=conversation.version if conversation else 0,
            )
            await self._store.begin(record, background=self.background)

    async def events(self) -> AsyncGenerator[list[Event], None]:
        """Event batches from `response.created` to the terminal event (or until the consumer stops)."""
        if self._lease is None:
            raise RuntimeError("Run.begin() must be awaited before events()")
        prepared = self.prepared
        batches = run_generation(
            prepared.adapter,
            prepared.generation,
            self.assembler,
            prepared.mapper(),
            keepalive=self._runtime.snapshot.config.server.keepalive_seconds,
            stats=self.stats,
            queued=self.background,
            aborts=self._runtime.aborts,
            opened=self._opened,
        )
        self._active_streams.inc()
        # A stored foreground run keeps its owner lease alive; if this process dies, the lease lapses and the
        # next reader marks the response failed (background runs renew theirs in background.py).
        keeper = None
        if self._store is not None and not self.background:
            keeper = asyncio.get_running_loop().create_task(self._keep_lease(self._store))
        try:
            async with contextlib.aclosing(batches):
                async for batch in batches:
                    if self.assembler.terminal and not self.background:
                        batch = await self._store_end(batch)
                    yield batch
        finally:
            if keeper is not None:
                keeper.cancel()
            if self._store is not None and not self.background and not self._saved and self._store_failure is None:
                with contextlib.suppress(GatewayError):  # the client is gone; keep what it got, if Redis lets us
                    await shielded(self._store.finish(self.assembler.response))
            self._active_streams.dec()
            self._lease.release()
            self._log_figures()

    async def collect(self) -> Response:
        """Run to the end without streaming: the final response, or the error that ended it."""
        async for _ in self.events():
            pass
        if self.stats.error is not None:
            raise self.stats.error
        return self.assembler.response

    async def _keep_lease(self, store: ResponseStore) -> None:
        interval = store.lease_seconds / 3  # two renewals may fail (a Redis blip) before the lease lapses
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(GatewayError):
                await store.heartbeat(self.prepared.response.id)

    async def _store_end(self, batch: list[Event]) -> list[Event]:
        """Store a foreground response's final state before its terminal event leaves."""
        if self._store is None:
            return batch
        response = self.assembler.response
        try:
            await shielded(self._store.finish(response, (), self.conversation_items(response)))
        except GatewayError as exc:
            log.error("store_save_failed", response_id=self.prepared.response.id, error=exc.message)
            self._store_failure = exc
            self.stats.status, self.stats.error = "failed", exc
            return [unstored(event, exc) for event in batch]
        self._saved = True
        return batch

    def conversation_items(self, response: Response) -> list[Any]:
        """What the turn adds to its conversation when it completes: its input, then its output."""
        if self._turn is None or self._turn.conversation is None:
            return []
        return turn_pairs([*self._turn.stored_input, *response.output], response.model)

    def _log_figures(self) -> None:
        stats = self.stats
        tokens = stats.token_usage()
        self._record.fields.update(
            response_status=stats.status,
            ttft_ms=stats.ttft_ms(),
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cached_tokens=tokens.cached_tokens,
            # A scripted model's "speed" (~100,000 tok/s) would only mislead dashboards and the status page.
            tokens_per_second=stats.tokens_per_second() if self.prepared.adapter.capabilities.decodes else None,
        )
        if stats.error is not None:
            self._record.fields["error_code"] = stats.error.code


async def _discard(opening: asyncio.Future[AsyncIterator[Delta]]) -> None:
    """Stop an adapter stream being opened, or close it if it opened."""
    if not opening.done():
        opening.cancel()
    try:
        stream = await opening
    except (asyncio.CancelledError, Exception):
        return
    await stream.aclose()  # type: ignore[attr-defined]


def unstored(event: Event, failure: GatewayError) -> Event:
    """A terminal event for a response whose final state could not be stored."""
    if not isinstance(event, TERMINAL_EVENTS):
        return event
    error = ResponseError(
        code=failure.code or "store_unavailable",
        message="The response was generated but could not be stored; it is lost. " + failure.message,
    )
    response = msgspec.structs.replace(event.response, status="failed", error=error, completed_at=None)
    return ResponseFailed(sequence_number=event.sequence_number, response=response)


def _header_value(items: list[str]) -> str:
    """Printable ASCII only: names in degradations come from client input (tool names, labels), and one
    CR, LF or NUL would make the whole response invalid. The full names stay in the log line."""
    text = ", ".join(items)
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:2000]
