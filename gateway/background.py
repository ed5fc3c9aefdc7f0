"""Background responses: generation detached from the request, its events logged in Redis.

POST returns at once (queued). A task on this replica runs the generation and appends
each event batch to the response's Redis stream; that script also reports a cancel
request, and a heartbeat renews the owner's lease and checks for one while the model
is silent. Any replica replays and follows the log (`follow`) and cancels (a flag the
owner sees within a heartbeat). If the owner's process dies, its lease lapses and the
first reader fails the response, so nobody waits forever.

A cancelled response's log ends with an `error` event, code `response_cancelled`: the
API has no `response.cancelled` event, and `response.failed` would claim a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import structlog

from gateway.errors import GatewayError
from gateway.events import STREAM_ENDINGS, ErrorEvent, Event, ResponseFailed
from gateway.protocol import Response, ResponseError
from gateway.run import Run
from gateway.sse import frame
from gateway.store import TERMINAL, EventLog, RedisStore
from gateway.store.shield import shielded

__all__ = ["BackgroundRuns", "cancel_event", "follow"]

log = structlog.get_logger()

HEARTBEAT_SECONDS = 0.5
SHUTDOWN_SECONDS = 5.0
_JSON = msgspec.json.Encoder()


def cancel_event(sequence_number: int) -> ErrorEvent:
    return ErrorEvent(sequence_number=sequence_number, code="response_cancelled", message="The response was cancelled.")


class BackgroundRuns:
    """The background responses this replica owns."""

    def __init__(self, store: RedisStore, *, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._store = store
        self._heartbeat = heartbeat
        self._runs: dict[asyncio.Task[None], _OwnedRun] = {}

    @property
    def active(self) -> int:
        return len(self._runs)

    def launch(self, run: Run) -> None:
        """Consume a begun run in a task of its own (the request that started it may end)."""
        owned = _OwnedRun(self._store, run, self._heartbeat)
        task = asyncio.get_running_loop().create_task(owned.main(), name=f"background {run.prepared.response.id}")
        self._runs[task] = owned
        task.add_done_callback(lambda done: self._runs.pop(done, None))

    async def aclose(self) -> None:
        """Shutdown: runs still going end as failed (`server_shutdown`), logged and stored."""
        for task, run in list(self._runs.items()):
            run.stop = run.stop or "shutdown"
            task.cancel()
        if self._runs:
            await asyncio.wait(list(self._runs), timeout=SHUTDOWN_SECONDS)


class _OwnedRun:
    """A background run this replica executes: its batches go to the event log, not to a client."""

    def __init__(self, store: RedisStore, run: Run, heartbeat: float) -> None:
        self._store = store
        self._model = run.prepared.model.name
        self._run = run
        self._batches = run.events()
        self._heartbeat = heartbeat
        self._id = run.prepared.response.id
        self.assembler = run.assembler
        self.stop: str | None = None  # why it ends early: cancel | missing | shutdown | store | error
        self.ended = False
        self.last_seq = -1  # highest sequence number ever sent to the log (even if the write failed)

    async def main(self) -> None:
        started = time.perf_counter()
        me = asyncio.current_task()
        assert me is not None
        watcher = asyncio.get_running_loop().create_task(self._watch(me))
        try:
            async with contextlib.aclosing(self._batches):
                async for batch in self._batches:
                    await self._log(batch)
                    if self.ended or self.stop is not None:
                        return
        except asyncio.CancelledError:
            me.uncancel()
            self.stop = self.stop or "shutdown"
        except GatewayError as exc:
            log.error("background_store_failed", response_id=self._id, error=exc.message)
            self.stop = "store"
        except Exception:
            log.exception("background_failed", response_id=self._id)
            self.stop = "error"
        finally:
            watcher.cancel()
            if not self.ended:
                await self._end_early()
            log.info(
                "background_response", response_id=self._id, model=self._model,
                response_status=self.assembler.response.status, stop=self.stop,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    async def _log(self, batch: list[Event]) -> None:
        status = None
        if self.last_seq < 0:  # the first batch: created + queued; the run starts now
            self.assembler.response = msgspec.structs.replace(self.assembler.response, status="in_progress")
            batch = [*batch, *self.assembler.keepalive()]
            status = "in_progress"
        if batch:
            self.last_seq = max(self.last_seq, batch[-1].sequence_number)
        if self.assembler.terminal:
            await self._store_end(self.assembler.response, batch)
            return
        signal = await self._store.append(self._id, batch, status)
        if signal != "ok":
            self.stop = signal

    async def _end_early(self) -> None:
        self.assembler.cancel()  # a no-op when the runner already ended it
        if self.stop == "missing":
            return  # deleted while running: nothing to keep
        response = self.assembler.response
        seq = self.last_seq + 1
        events: list[Event]
        if self.stop == "cancel":
            events = [cancel_event(seq)]
        else:
            shutdown = self.stop == "shutdown"
            error = ResponseError(
                code="server_shutdown" if shutdown else "server_error",
                message="The gateway stopped before this background response finished."
                if shutdown
                else "The background response failed inside the gateway.",
            )
            response = msgspec.structs.replace(response, status="failed", error=error)
            events = [ResponseFailed(sequence_number=seq, response=response)]
        try:
            await self._store_end(response, events)
        except GatewayError as exc:  # the lease lapses and a reader fails the response later
            log.error("background_end_not_stored", response_id=self._id, error=exc.message)

    async def _store_end(self, response: Response, events: list[Event]) -> None:
        outcome = await shielded(self._store.finish(response, events, self._run.conversation_items(response)))
        self.ended = True
        if outcome.outcome == "conflict" and outcome.status == "cancelled":
            # The cancel endpoint won the race: keep what was generated, end the log as cancelled.
            kept = [e for e in events if not isinstance(e, STREAM_ENDINGS)]
            cancelled = msgspec.structs.replace(response, status="cancelled", completed_at=None, error=None)
            await shielded(self._store.finish(cancelled, [*kept, cancel_event(events[-1].sequence_number)]))

    async def _watch(self, main: asyncio.Task[None]) -> None:
        while not main.done():
            await asyncio.sleep(self._heartbeat)
            try:
                signal = await self._store.heartbeat(self._id)
            except GatewayError:
                continue  # Redis blip: the next beat retries; the lease outlasts several
            if signal != "ok":
                self.stop = signal
                main.cancel()
                return


async def follow(events: EventLog, response_id: str, after: int, *, wait: float = 1.0) -> AsyncIterator[bytes]:
    """SSE bytes of the logged events after `after`, then live ones, until the terminal event."""
    ended = 0  # reads that found nothing new after the record said it had ended
    pause = 0.0  # the first read does not wait: a finished response replays at once
    while True:
        try:
            logged = await events.read(response_id, after, pause)
            status = "" if logged else await events.reap(response_id)
        except GatewayError as exc:
            error = ErrorEvent(sequence_number=after + 1, code=exc.code, message=exc.message)
            yield frame("error", _JSON.encode(error))
            return
        if logged:
            yield b"".join(frame(e.type, e.data) for e in logged)
            after = logged[-1].sequence_number
            if any(e.terminal for e in logged):
                return
            pause = wait
            continue
        if status == "missing":
            return
        pause = wait
        if status in TERMINAL:
            # An ending is logged with its events in one script, so one more read finds them (the
            # run may have ended between the read and the status check). Only a cancel precedes
            # its owner's last event, by up to a heartbeat.
            ended += 1
            if ended > (2 if status == "cancelled" else 1):
                return
            pause = wait if status == "cancelled" else 0.0
