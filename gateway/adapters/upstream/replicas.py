"""The replicas of one upstream model: which one gets the next request, and a circuit breaker for each.

A replica that fails `breaker_failures` times in a row (refused, 5xx, timed out, cut mid-stream) is *open*:
requests skip it, and a probe (`GET {base_url}/models`) asks it every `breaker_open_seconds` whether it is back.
The next request goes to the least busy closed replica (ties: the one used longest ago, so load spreads).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

__all__ = ["Replica", "ReplicaSet"]

log = structlog.get_logger()


class Replica:
    """One upstream server: its load and its breaker."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.active = 0
        self.requests = 0
        self.errors = 0
        self.consecutive_failures = 0
        self.opened_at: float | None = None  # the breaker is open since (monotonic)
        self.last_error: str | None = None
        self.last_used = 0.0

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": "open" if self.open else "closed",
            "active": self.active,
            "requests": self.requests,
            "errors": self.errors,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
        }


Probe = Callable[[Replica], Awaitable[bool]]


class ReplicaSet:
    def __init__(self, urls: list[str], *, failures_to_open: int, open_seconds: float, probe: Probe) -> None:
        self.replicas = [Replica(url) for url in urls]
        self._failures_to_open = failures_to_open
        self._open_seconds = open_seconds
        self._probe = probe
        self._probes: dict[str, asyncio.Task[None]] = {}

    def choose(self, tried: set[str]) -> Replica | None:
        """The least busy closed replica not tried yet for this request; else a tried one (a retry on the only
        replica there is); None when every breaker is open."""
        closed = [r for r in self.replicas if not r.open]
        fresh = [r for r in closed if r.url not in tried] or closed
        if not fresh:
            return None
        replica = min(fresh, key=lambda r: (r.active, r.last_used))
        replica.last_used = time.monotonic()
        return replica

    def succeeded(self, replica: Replica) -> None:
        replica.consecutive_failures = 0

    def failed(self, replica: Replica, reason: str) -> None:
        replica.errors += 1
        replica.consecutive_failures += 1
        replica.last_error = reason
        if not replica.open and replica.consecutive_failures >= self._failures_to_open:
            replica.opened_at = time.monotonic()
            log.warning("upstream_breaker_open", replica=replica.url, failures=replica.consecutive_failures,
                        reason=reason)
            self._probes[replica.url] = asyncio.get_running_loop().create_task(self._probe_until_back(replica))

    def seconds_to_probe(self) -> float:
        """How long until the next probe of an open replica (for the error message when all are open)."""
        now = time.monotonic()
        waits = [max(0.0, r.opened_at + self._open_seconds - now) for r in self.replicas if r.opened_at is not None]
        return round(min(waits), 1) if waits else 0.0

    async def _probe_until_back(self, replica: Replica) -> None:
        while replica.open:
            await asyncio.sleep(self._open_seconds)
            try:
                back = await self._probe(replica)
            except Exception as exc:  # a probe must never kill its loop
                back, replica.last_error = False, f"probe failed: {type(exc).__name__}"
            if back:
                replica.opened_at, replica.consecutive_failures = None, 0
                log.info("upstream_breaker_closed", replica=replica.url)
            else:
                replica.opened_at = time.monotonic()
        self._probes.pop(replica.url, None)

    def state(self) -> str:
        open_count = sum(r.open for r in self.replicas)
        if open_count == 0:
            return "ready"
        return "unreachable" if open_count == len(self.replicas) else "degraded"

    async def aclose(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._probes.clear()
