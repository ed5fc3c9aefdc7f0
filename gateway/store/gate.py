"""How many store round trips run at once: `store.max_connections` slots; the rest wait their turn.

redis-py's pools raise as soon as they reach their size (its asyncio `ConnectionPool`, the sentinel
pool, and each node of a cluster client alike); only `BlockingConnectionPool` waits, and it exists for
plain URLs only. One gate in front of every round trip makes every backend behave the same and tells
/health and /metrics how busy the store is; each client's pool is sized to the gate, so the pool itself
never runs out first.

Waiting is first come, first served, and a waiter gives up only when no slot has been freed for the whole
store timeout (the store is stuck), not after a fixed time in the queue: when a burst keeps the event
loop busy every round trip takes longer, a long queue still moves, and failing it would turn load into
errors. When the store goes down, everyone waiting is told at once (503 without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Gate", "NoSlot"]


class NoSlot(Exception):
    """No slot was freed for the store timeout, or the store went down while waiting."""


class _Slots:
    """A FIFO semaphore: a freed slot is handed to the longest waiter, who keeps its place while it waits."""

    __slots__ = ("_queue", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._queue: deque[asyncio.Future[bool]] = deque()

    async def take(self, patience: Callable[[], float]) -> bool:
        """A slot; False if `patience()` (seconds still worth waiting, asked again whenever it runs out)
        reaches 0 first, or if `release_waiters` sent everyone away."""
        if self.free and not self._queue:
            self.free -= 1
            return True
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._queue.append(turn)
        timer: asyncio.TimerHandle

        def check() -> None:  # a timer rather than wait_for: a slot handed over reaches the waiter in one step
            nonlocal timer
            if turn.done():
                return
            wait = patience()
            if wait > 0:
                timer = loop.call_later(wait, check)
            else:
                self._queue.remove(turn)
                turn.set_result(False)

        timer = loop.call_later(max(0.0, patience()), check)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                with contextlib.suppress(ValueError):  # unless `give` already dropped it
                    self._queue.remove(turn)
            elif turn.result():
                self.give()  # handed a slot just as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def give(self) -> None:
        """Free a slot: to the longest waiter if any."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self.free += 1

    def release_waiters(self) -> int:
        """Send every waiter away without a slot; how many there were."""
        count = 0
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(False)
                count += 1
        return count


class Gate:
    __slots__ = ("_moved", "_readers", "_slots", "in_use", "size", "timeout", "timeouts", "waiting")

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self.in_use = 0
        self.waiting = 0
        self.timeouts = 0  # round trips that gave up waiting (each became a 503)
        self._slots = _Slots(size)
        # A blocking read (a follower of a background response) holds its slot up to half the store
        # timeout; readers get at most half the slots, so they never starve the requests.
        self._readers = _Slots(max(1, size // 2))
        self._moved = time.monotonic()  # when a slot was last freed

    @property
    def idle(self) -> int:
        return self.size - self.in_use

    async def enter(self) -> None:
        """Take a slot, waiting while the queue moves; NoSlot if it stalled for the store timeout."""
        started = time.monotonic()
        self.waiting += 1
        try:
            taken = await self._slots.take(lambda: self.timeout - (time.monotonic() - max(self._moved, started)))
        finally:
            self.waiting -= 1
        if not taken:
            if time.monotonic() - max(self._moved, started) >= self.timeout:
                self.timeouts += 1  # (else `store_down` sent it away)
            raise NoSlot
        self.in_use += 1

    def leave(self) -> None:
        self.in_use -= 1
        self._moved = time.monotonic()
        self._slots.give()

    async def enter_blocking(self, patience: float) -> bool:
        """A reader's turn if one frees up within `patience` seconds (False: none did, which to a reader
        willing to wait that long for events is the same as no events), then a slot as `enter` takes it."""
        deadline = time.monotonic() + patience
        self.waiting += 1
        try:
            taken = await self._readers.take(lambda: deadline - time.monotonic())
        finally:
            self.waiting -= 1
        if not taken:
            return False
        try:
            await self.enter()
        except BaseException:
            self._readers.give()
            raise
        return True

    def leave_blocking(self) -> None:
        self.leave()
        self._readers.give()

    def store_down(self) -> None:
        """The store stopped answering: whoever waits gets a 503 now rather than after a timeout."""
        self._slots.release_waiters()
        self._readers.release_waiters()

    def describe(self) -> dict[str, int]:
        return {"size": self.size, "in_use": self.in_use, "idle": self.idle, "waiting": self.waiting,
                "timeouts": self.timeouts}
