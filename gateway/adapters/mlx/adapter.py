"""The `mlx` adapter: a model served by mlx-lm in its own worker process.

Cheap to construct (a reload may build many): nothing starts until the first request,
or `start()` when the manifest says `preload`. The worker is started, stopped and
restarted here; the shared pool decides when there is room and when to evict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog

from gateway.adapters.base import Capabilities, Delta, Finish, GenerationRequest
from gateway.adapters.mlx.pool import WorkerPool
from gateway.adapters.mlx.process import WorkerProcess
from gateway.adapters.mlx.wire import Rendered
from gateway.config import MlxModel
from gateway.errors import ModelUnavailable, RateLimited

__all__ = ["Backoff", "MlxAdapter"]

log = structlog.get_logger()

STABLE_AFTER = 60.0  # a worker that lived this long resets the crash count
MAX_BACKOFF = 30.0


class Backoff:
    """Repeated failures → a growing pause before the next attempt (capped at 30 s).

    A crash is restarted at once the first time; load failures always wait, since
    retrying a missing download on every request helps nobody.
    """

    def __init__(self) -> None:
        self.failures = 0
        self.next_attempt = 0.0

    def failed(self, *, first_free: bool) -> None:
        self.failures += 1
        exponent = self.failures - (2 if first_free else 1)
        delay = 0.0 if exponent < 0 else min(MAX_BACKOFF, 2.0**exponent)
        self.next_attempt = time.monotonic() + delay

    def reset(self) -> None:
        self.failures = 0
        self.next_attempt = 0.0

    def remaining(self) -> float:
        return max(0.0, self.next_attempt - time.monotonic())


class MlxAdapter:
    def __init__(self, spec: MlxModel, pool: WorkerPool | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.pool = pool if pool is not None else WorkerPool()
        # Until the model is loaded, assume it can call tools and think; its tokenizer decides later.
        self.capabilities = Capabilities(tool_calling=True, vision=False, reasoning=True)
        self.last_used = time.monotonic()
        self.last_error: str | None = None
        self.counts = {"served": 0, "loads": 0, "crashes": 0, "unloads": 0, "evictions": 0, "load_failures": 0}
        self._worker: WorkerProcess | None = None
        self._loading = False
        self._in_flight = 0
        self._closed = False
        self._lock = asyncio.Lock()
        self._backoff = Backoff()
        self._memory_hint = 0
        self._preload: asyncio.Task[None] | None = None
        self._load_task: asyncio.Task[WorkerProcess] | None = None
        self._pending: WorkerProcess | None = None
        self._failure: str | None = None
        self.pool.join(self)

    # ------------------------------------------------------------ pool member

    @property
    def holds_slot(self) -> bool:
        return self._loading or (self._worker is not None and self._worker.alive)

    @property
    def busy(self) -> bool:
        return self._loading or self._in_flight > 0

    @property
    def memory_bytes(self) -> int:
        worker = self._worker
        return worker.info.memory_bytes if worker is not None and worker.info is not None else self._memory_hint

    @property
    def idle_unload_seconds(self) -> float | None:
        return self.spec.idle_unload_seconds

    async def unload(self, reason: str) -> None:
        async with self._lock:
            worker, self._worker = self._worker, None
            if worker is None:
                return
            await worker.stop()
            self.counts["unloads"] += 1
            if reason.startswith("evicted"):
                self.counts["evictions"] += 1
            log.info("mlx_model_unloaded", model=self.name, reason=reason)
        self.pool.notify()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.spec.preload:
            self._preload = asyncio.get_running_loop().create_task(self._warm(), name=f"mlx-preload:{self.name}")

    async def _warm(self) -> None:
        try:
            await self._ready_worker()
        except ModelUnavailable as exc:
            log.warning("mlx_preload_failed", model=self.name, reason=exc.message)

    async def aclose(self) -> None:
        self._closed = True
        for task in (self._preload, self._load_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.unload("closed")
        self.pool.leave(self)

    async def _ready_worker(self) -> WorkerProcess:
        """The running worker, loading it first if needed. The load is its own task, so a
        client that leaves during a long load does not abort it for everyone else."""
        worker = self._worker
        if worker is not None and worker.alive:
            return worker
        if self._load_task is None or self._load_task.done():
            if self._closed:
                raise ModelUnavailable(f"The model '{self.name}' is shutting down.")
            wait = self._backoff.remaining()
            if wait > 0:
                raise ModelUnavailable(
                    f"The model '{self.name}' is unavailable ({self.last_error}); next attempt in {wait:.0f} s."
                )
            self._load_task = asyncio.get_running_loop().create_task(self._load(), name=f"mlx-load:{self.name}")
        return await asyncio.shield(self._load_task)

    async def _load(self) -> WorkerProcess:
        async with self._lock:
            self._loading = True
            try:
                await self.pool.admit(self, self._memory_hint)  # no room is not the model's failure: no backoff
            except BaseException:
                self._loading = False
                raise
            try:
                worker = self._pending = WorkerProcess(
                    self.spec,
                    cache_dir=str(self.pool.cache_dir),
                    threads=self.spec.threads or self.pool.threads_per_worker(),
                    on_exit=self._worker_exited,
                )
                try:
                    info = await worker.start()
                except BaseException:
                    await worker.stop(grace=0)  # never leave a half-started process behind
                    raise
            except ModelUnavailable as exc:
                self.counts["load_failures"] += 1
                self.last_error = exc.message
                self._failure = "load"
                self._backoff.failed(first_free=False)
                raise
            finally:
                self._loading = False
                self._pending = None
                self.pool.notify()
            self._worker = worker
            self.counts["loads"] += 1
            self._memory_hint = info.memory_bytes
            self.last_error = None
            if self._failure == "load":
                self._backoff.reset()  # a successful load forgives earlier load failures, not crashes
            self.capabilities = Capabilities(
                tool_calling=info.tool_parser is not None, vision=False, reasoning=info.thinking
            )
        await self.pool.after_load(self)
        return worker

    def _worker_exited(self, worker: WorkerProcess) -> None:
        if worker.stopping or worker.ready_at is None:
            return  # asked to stop, or never loaded (reported as a load failure)
        self.counts["crashes"] += 1
        self.last_error = f"its worker exited unexpectedly ({worker.exit_text})"
        self._failure = "crash"
        if time.monotonic() - worker.ready_at >= STABLE_AFTER:
            self._backoff.reset()
        self._backoff.failed(first_free=True)
        self.pool.notify()

    # ------------------------------------------------------------ requests

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self._in_flight += 1
        self.last_used = time.monotonic()
        worker: WorkerProcess | None = None
        finished = False
        try:
            if self._in_flight > self.spec.max_batch + self.spec.max_queued:
                raise RateLimited(
                    f"The model '{self.name}' is busy: {self.spec.max_batch} requests are being generated and "
                    f"{self.spec.max_queued} more are waiting (max_batch, max_queued); try again shortly."
                )
            worker = await self._ready_worker()
            stream = worker.open(request)
            while not finished:
                item = await stream.get()
                if isinstance(item, BaseException):
                    raise item
                for delta in item:  # call ids are the assembler's to assign
                    finished = isinstance(delta, Finish)
                    yield delta
                    if finished:
                        break
        finally:
            if worker is not None:
                worker.close_stream(request.request_id, cancel=not finished)
            self.counts["served"] += finished
            self._in_flight -= 1
            self.last_used = time.monotonic()
            self.pool.notify()

    async def render(self, request: GenerationRequest) -> Rendered:
        """The prompt this model would be given for `request` (text and token ids)."""
        self._in_flight += 1
        try:
            worker = await self._ready_worker()
            return await worker.render(request)
        finally:
            self._in_flight -= 1
            self.last_used = time.monotonic()

    # ------------------------------------------------------------ state

    def describe(self) -> dict[str, Any]:
        worker = self._worker if self._pending is None else self._pending
        state = "unloaded"
        if self._loading:
            state = "loading"
        elif worker is not None and worker.alive and worker.info is not None:
            state = "ready"
        elif self._backoff.remaining() > 0:
            state = "backoff"
        elif worker is not None:
            state = "crashed"  # restarts on the next request
        elif self.last_error is not None:
            state = "failed"
        out: dict[str, Any] = {
            "adapter": "mlx",
            "source": self.spec.source,
            "state": state,
            "active": self._in_flight,
            "queued": max(0, self._in_flight - self.spec.max_batch),
            "idle_seconds": round(time.monotonic() - self.last_used, 1),
            **self.counts,
            "last_error": self.last_error,
        }
        if worker is not None:
            out["pid"] = worker.pid
            out["stage"] = worker.status
            if worker.progress[1]:
                out["progress"] = {"done": worker.progress[0], "total": worker.progress[1]}
            if worker.info is not None:
                out["memory_mb"] = round(worker.info.memory_bytes / 2**20, 2)
                out["memory_bytes"] = worker.info.memory_bytes
                out["tool_parser"] = worker.info.tool_parser
                out["thinking"] = worker.info.thinking
            if worker.prefix_cache:
                out["prefix_cache"] = worker.prefix_cache
            if worker.cancels:
                last = worker.cancels[-1]
                out["last_cancel"] = {"generated": last.generated, "after_cancel": last.after_cancel}
        return out
