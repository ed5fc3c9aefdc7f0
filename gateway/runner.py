"""Drive one generation: adapter deltas → call mapping → assembler → batches of events.

The adapter runs in its own task feeding a queue, so waiting for the next delta can
time out without disturbing it: every `keepalive` seconds without an event a
`response.in_progress` goes out (a long prefill must not trip Codex's idle timer).
Leaving the iterator early (client gone) cancels the adapter task at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Literal

import structlog

from gateway.adapters.base import Adapter, Delta, Finish, GenerationRequest, Tally, TokenUsage
from gateway.assemble import Assembler, usage_from
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.policies.calls import CallMapper
from gateway.protocol import Usage

__all__ = ["RunStats", "run_generation"]

log = structlog.get_logger()


class _Marker(enum.Enum):
    END = enum.auto()


_END = _Marker.END  # the adapter's stream ended

# What the pump task hands the generation loop: a delta, the adapter's exception, the end marker
# or, put by an abort function, the error to fail the response with.
_Item = Delta | BaseException | Literal[_Marker.END]


class RunStats:
    """What the canonical log line and metrics need to know about a run."""

    __slots__ = (
        "counted",
        "error",
        "finished",
        "first_token",
        "started",
        "status",
    )

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_token: float | None = None
        self.finished: float | None = None
        self.status = "in_progress"
        self.error: GatewayError | None = None
        self.counted: TokenUsage | None = None  # the last counts the adapter reported (a Tally or the Finish)

    def count(self, usage: TokenUsage) -> None:
        self.counted = usage

    def token_usage(self) -> TokenUsage:
        return self.counted or TokenUsage()

    def usage(self) -> Usage | None:
        """The last counts an adapter reported, as the API's usage (None if it reported none)."""
        return usage_from(self.counted) if self.counted is not None else None

    def tokens_per_second(self) -> float | None:
        """Decode speed: tokens after the first over the time since the first."""
        output = self.token_usage().output_tokens
        if self.first_token is None or self.finished is None or output < 2:
            return None
        elapsed = self.finished - self.first_token
        return round((output - 1) / elapsed, 1) if elapsed > 0 else None

    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else round((self.first_token - self.started) * 1000, 2)


async def _pump(
    adapter: Adapter, generation: GenerationRequest, opened: AsyncIterator[Delta] | None, queue: asyncio.Queue[_Item]
) -> None:
    try:
        stream = opened if opened is not None else await adapter.open(generation)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for delta in stream:
                queue.put_nowait(delta)
        queue.put_nowait(_END)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        queue.put_nowait(exc)


async def run_generation(
    adapter: Adapter,
    generation: GenerationRequest,
    assembler: Assembler,
    mapper: CallMapper,
    *,
    keepalive: float,
    stats: RunStats,
    queued: bool = False,
    aborts: set[Callable[[GatewayError], None]] | None = None,
    opened: AsyncIterator[Delta] | None = None,
) -> AsyncGenerator[list[Event], None]:
    """Yield event batches until a terminal event (the consumer, a `Run`, stores the terminal batch).

    `opened` is the adapter's stream if the caller opened it already (so that opening errors could still be an
    HTTP status); otherwise it is opened here, and an error opening it fails the response.

    While it runs, an abort function sits in `aborts`: calling it ends the response with that error
    (the gateway uses it to fail what is still running when a shutdown's grace period is over).
    """
    loop = asyncio.get_running_loop()
    yield assembler.start(queued=queued)
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    pump = asyncio.create_task(_pump(adapter, generation, opened, queue))
    abort = queue.put_nowait
    if aborts is not None:
        aborts.add(abort)
    deadline = loop.time() + keepalive
    try:
        while not assembler.terminal:
            if queue.empty():
                try:
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        first = await queue.get()
                except TimeoutError:
                    batch = assembler.keepalive()
                    deadline = loop.time() + keepalive
                    yield batch
                    continue
            else:
                first = queue.get_nowait()
            batch = _consume(first, assembler, mapper, stats)
            while not assembler.terminal and not queue.empty():
                batch += _consume(queue.get_nowait(), assembler, mapper, stats)
            if assembler.terminal:
                stats.finished = time.perf_counter()
                stats.status = assembler.response.status
            if batch:
                deadline = loop.time() + keepalive
                yield batch
    finally:
        if aborts is not None:
            aborts.discard(abort)
        if not pump.done():
            pump.cancel()
        if not assembler.terminal:
            assembler.cancel(usage=stats.usage())  # what was counted before the stop, if the adapter said
            stats.status = "cancelled"
            stats.finished = time.perf_counter()


def _consume(item: _Item, assembler: Assembler, mapper: CallMapper, stats: RunStats) -> list[Event]:
    if item is _END:
        return _fail(assembler, stats, GatewayError("The model stream ended without finishing."))
    if isinstance(item, GatewayError):
        return _fail(assembler, stats, item)
    if isinstance(item, BaseException):
        log.error("adapter_crashed", exc_info=item)
        return _fail(assembler, stats, GatewayError(f"The model adapter failed ({type(item).__name__})."))
    if isinstance(item, Tally):
        stats.count(item.usage)
        return []
    events: list[Event] = []
    for delta in mapper.map(item):
        if stats.first_token is None and not isinstance(delta, Finish):
            stats.first_token = time.perf_counter()
        if isinstance(delta, Finish):
            stats.count(delta.usage)
        events += assembler.feed(delta)
    if mapper.over_limit and not assembler.terminal:
        # A call past max_tool_calls (or a second one without parallel_tool_calls) has begun: the response ends
        # with the calls before it, and leaving the loop stops the model.
        events += assembler.feed(Finish(reason="tool_calls", usage=stats.token_usage()))
    return events


def _fail(assembler: Assembler, stats: RunStats, error: GatewayError) -> list[Event]:
    stats.error = error
    return assembler.fail(error)
