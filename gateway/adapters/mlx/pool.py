"""Loaded-model bookkeeping shared by every mlx adapter of a gateway.

The Runtime owns one pool. Before a model loads it asks the pool for room: under
`mlx.max_loaded_models` and `mlx.max_memory_gb`, evicting the least recently used
idle models first, waiting (up to `mlx.slot_wait_seconds`) when every loaded model
is busy. A janitor task unloads models idle longer than their `idle_unload_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Protocol

import structlog

from gateway.config import MlxSettings
from gateway.errors import ModelUnavailable

__all__ = ["FirstTokenWait", "Member", "WorkerPool", "default_cache_dir"]

log = structlog.get_logger()

JANITOR_PERIOD = (0.05, 5.0)  # bounds on how often idle models are checked, seconds
FIRST_TOKEN_PRIORITY_SECONDS = 10.0  # how long one request waiting for its first token may pace other models


def default_cache_dir(settings: MlxSettings) -> Path:
    """Where dummy models are built: the manifest, then $MLXGW_CACHE_DIR, then ~/.cache."""
    if settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    env = os.environ.get("MLXGW_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mlx-gateway"


class Member(Protocol):
    """What the pool needs from an adapter."""

    name: str
    last_used: float

    @property
    def holds_slot(self) -> bool:
        """Loaded, or loading."""

    @property
    def busy(self) -> bool:
        """Serving, queued or loading: not evictable."""

    @property
    def memory_bytes(self) -> int: ...

    @property
    def idle_unload_seconds(self) -> float | None: ...

    async def unload(self, reason: str) -> None: ...

    def pace(self, on: bool) -> None:
        """Slow down (another model waits for a first token), or run freely again."""


class WorkerPool:
    def __init__(self, settings: MlxSettings | None = None) -> None:
        self.settings = settings or MlxSettings()
        self._members: list[Member] = []
        self._changed: asyncio.Event | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.evictions = 0
        self._first_tokens: dict[str, int] = {}  # requests waiting for their first token, by model

    def configure(self, settings: MlxSettings) -> None:
        """A reloaded manifest's limits apply to the next load."""
        self.settings = settings
        self._pace()
        self.notify()

    @property
    def cache_dir(self) -> Path:
        return default_cache_dir(self.settings)

    def threads_per_worker(self) -> int:
        cpus = os.cpu_count() or 1
        share = self.settings.max_loaded_models or max(1, len(self._members))
        return max(1, cpus // min(share, cpus))

    def join(self, member: Member) -> None:
        if member not in self._members:
            self._members.append(member)

    def leave(self, member: Member) -> None:
        if member in self._members:
            self._members.remove(member)
        self._first_tokens.pop(member.name, None)
        self._pace()
        self.notify()

    # ------------------------------------------------------------ first-token priority

    def waiting_first_token(self, member: Member, change: int) -> None:
        """`member` has `change` more (or fewer) requests sent to its worker and not answered yet."""
        count = self._first_tokens.get(member.name, 0) + change
        if count > 0:
            self._first_tokens[member.name] = count
        else:
            self._first_tokens.pop(member.name, None)
        self._pace()

    def _pace(self) -> None:
        """Models with no request of their own waiting for a first token slow down while another has one."""
        waiting = set(self._first_tokens) if self.settings.first_token_priority else set()
        for member in self._members:
            member.pace(bool(waiting) and member.name not in waiting)

    def notify(self) -> None:
        """Something was released or unloaded: waiting loads re-check, the janitor re-plans."""
        if self._changed is not None:
            self._changed.set()

    async def admit(self, member: Member, expected_bytes: int = 0) -> None:
        """Return when `member` may load; the caller must mark itself as holding a slot at once."""
        self._ensure_janitor()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.slot_wait_seconds
        while True:
            others = [m for m in self._members if m is not member and m.holds_slot]
            if self._fits(others, expected_bytes):
                return
            idle = sorted((m for m in others if not m.busy), key=lambda m: m.last_used)
            if idle:
                victim = idle[0]
                self.evictions += 1
                log.info("mlx_model_evicted", model=victim.name, for_model=member.name)
                await victim.unload("evicted to make room")
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                names = ", ".join(m.name for m in others)
                raise ModelUnavailable(
                    f"No room to load '{member.name}': the loaded models ({names}) are all busy "
                    f"(mlx.max_loaded_models / mlx.max_memory_gb). Try again shortly."
                )
            assert self._changed is not None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, 1.0)):  # re-check at least once a second
                    await self._changed.wait()

    def _fits(self, others: list[Member], expected_bytes: int) -> bool:
        cap = self.settings.max_loaded_models
        if cap is not None and len(others) + 1 > cap:
            return False
        limit = self.settings.max_memory_gb
        if limit is not None and others:  # a lone model is always allowed to try
            used = sum(m.memory_bytes for m in others) + expected_bytes
            if used > limit * 1e9:
                return False
        return True

    def over_memory_cap(self) -> bool:
        limit = self.settings.max_memory_gb
        return limit is not None and sum(m.memory_bytes for m in self._members if m.holds_slot) > limit * 1e9

    async def enforce_memory_cap(self, member: Member) -> None:
        """`member` reported its size (at load, or grown since: KV caches, prefix cache): evict idle others, least
        recently used first, while the loaded models hold more than `mlx.max_memory_gb`. Busy models stay; so does
        a lone model over the cap (it may still serve)."""
        while self.over_memory_cap():
            loaded = [m for m in self._members if m.holds_slot]
            idle = sorted((m for m in loaded if m is not member and not m.busy), key=lambda m: m.last_used)
            if not idle:
                return
            self.evictions += 1
            used = sum(m.memory_bytes for m in loaded)
            log.info("mlx_model_evicted", model=idle[0].name, for_model=member.name, reason="memory",
                     memory_bytes=used, max_memory_gb=self.settings.max_memory_gb)
            await idle[0].unload("evicted: over the memory cap")

    # ------------------------------------------------------------ idle unload

    def _ensure_janitor(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        if self._janitor is None or self._janitor.done():
            self._janitor = asyncio.get_running_loop().create_task(self._sweep(), name="mlx-pool-janitor")

    async def _sweep(self) -> None:
        while True:
            limits = [m.idle_unload_seconds for m in self._members if m.idle_unload_seconds]
            period = min(max(min(limits) / 4, JANITOR_PERIOD[0]), JANITOR_PERIOD[1]) if limits else JANITOR_PERIOD[1]
            await asyncio.sleep(period)
            now = time.monotonic()
            for member in list(self._members):
                limit = member.idle_unload_seconds
                if limit and member.holds_slot and not member.busy and now - member.last_used >= limit:
                    log.info("mlx_model_idle_unload", model=member.name, idle_seconds=round(now - member.last_used, 1))
                    await member.unload("idle")

    async def aclose(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
            self._janitor = None

    def describe(self) -> dict[str, object]:
        return {
            "loaded": [m.name for m in self._members if m.holds_slot],
            "max_loaded_models": self.settings.max_loaded_models,
            "max_memory_gb": self.settings.max_memory_gb,
            "evictions": self.evictions,
            "waiting_first_token": sorted(self._first_tokens),
        }


class FirstTokenWait:
    """A request sent to its worker and not answered yet: the pool paces the other models meanwhile, for at most
    `FIRST_TOKEN_PRIORITY_SECONDS` (a request queued behind a full batch, or a very long prefill, must not slow the
    other models for minutes). `over()` when its first output (or its end) arrives; calling it again does nothing."""

    def __init__(self, pool: WorkerPool, member: Member) -> None:
        self._pool: WorkerPool | None = pool
        self._member = member
        pool.waiting_first_token(member, +1)
        self._timer = asyncio.get_running_loop().call_later(FIRST_TOKEN_PRIORITY_SECONDS, self.over)

    def over(self) -> None:
        if self._pool is not None:
            self._timer.cancel()
            self._pool.waiting_first_token(self._member, -1)
            self._pool = None
