"""A request sent to its worker when the runner opened its stream, before anyone reads it.

Sent at once, the model renders and prefills while the gateway writes the response's first events, instead of
after. Such a stream must still give its worker request back when it is never read: closed before its first
delta, or dropped unread (a client that left before the body started), it cancels the request and frees its place,
once. From its first delta on, the generator behind it cleans up as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from gateway.adapters.base import Delta

__all__ = ["SentStream"]


class SentStream:
    def __init__(self, deltas: AsyncGenerator[Delta, None], give_back: Callable[[], None]) -> None:
        self._deltas = deltas
        self._give_back: Callable[[], None] | None = give_back
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> SentStream:
        return self

    async def __anext__(self) -> Delta:
        self._give_back = None  # the generator's own `finally` owns the request from here on
        return await self._deltas.__anext__()

    async def aclose(self) -> None:
        self._unread()
        await self._deltas.aclose()

    def _unread(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()

    def __del__(self) -> None:
        if self._give_back is not None:
            # Garbage collection may run on any thread; the worker's socket belongs to the loop.
            with contextlib.suppress(RuntimeError):  # the loop is closed: its workers are gone with it
                self._loop.call_soon_threadsafe(self._unread)
