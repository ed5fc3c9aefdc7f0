"""The `mlx` adapter: a model served by mlx-lm in its own worker process.

Cheap to construct (a reload may build many): nothing starts until the first request, or `start()` when the
manifest says `preload`. The worker is started, stopped and restarted here; the shared pool decides when there
is room and when to evict.

The adapter is a state machine: `state` is what /health shows, and only these transitions change it.

    transition      from                        to
    begin_load      unloaded, failed, crashed   loading
    loaded          loading                     ready
    load_abandoned  loading                     where it started (no room in the pool, or cancelled: no fault)
    load_failed     loading                     backoff
    crashed         ready                       backoff (the first crash skips the pause: crashed)
    backoff_over    backoff                     failed (a load failed) or crashed (the worker died)
    unloaded        ready                       unloaded (idle, evicted)
    close           any                         closed

A request loads the model from `unloaded`, `failed` and `crashed`, and is refused in `backoff` and `closed`;
/ready counts a model in `backoff`, `failed` or `crashed` as unable to serve.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import msgspec
import structlog

from gateway.adapters.base import Capabilities, Delta, Finish, GenerationRequest
from gateway.adapters.mlx.constrain import CALL_GRAMMARS
from gateway.adapters.mlx.pool import FirstTokenWait, WorkerPool
from gateway.adapters.mlx.process import WorkerProcess
from gateway.adapters.mlx.sent import SentStream
from gateway.adapters.mlx.traits import ModelTraits, probe
from gateway.adapters.mlx.wire import MemoryUse, ModelInfo, Rendered
from gateway.config import MlxModel
from gateway.errors import ModelUnavailable, RateLimited

__all__ = ["Backoff", "MlxAdapter", "ModelState"]

log = structlog.get_logger()

ModelState = Literal["unloaded", "loading", "ready", "backoff", "failed", "crashed", "closed"]

STABLE_AFTER = 60.0  # a worker that lived this long resets the crash count
MAX_BACKOFF = 30.0
# Until a model's files or its load tell otherwise (an hf: model not downloaded yet), assume it can call tools and think.
ASSUMED = Capabilities(tool_calling=True, vision=False, reasoning=True, constrains_json=True, constrains_calls=True)


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
        self.state: ModelState = "unloaded"
        self.last_used = time.monotonic()
        self.last_error: str | None = None
        self.counts = {"served": 0, "loads": 0, "crashes": 0, "unloads": 0, "evictions": 0, "load_failures": 0}
        self._worker: WorkerProcess | None = None  # the worker being loaded (state loading) or serving (ready)
        self._traits: ModelTraits | None = None
        self._probed = False
        self._state_before_load: ModelState = "unloaded"
        self._last_failure: Literal["load", "crash"] | None = None
        self._backoff = Backoff()
        self._retry: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._lock = asyncio.Lock()  # one load or unload at a time
        self._memory_hint = 0
        self._preload: asyncio.Task[None] | None = None
        self._load_task: asyncio.Task[WorkerProcess] | None = None
        self._making_room: asyncio.Task[None] | None = None  # evicting others after this model grew past the cap
        self._paced = False  # what its worker was last told (pool.py: first-token priority)
        self.pool.join(self)

    # ------------------------------------------------------------ transitions (the only writers of `state`)

    def _begin_load(self) -> None:
        self._state_before_load, self.state = self.state, "loading"

    def _load_abandoned(self) -> None:
        """No room, or cancelled: not the model's failure, so no backoff."""
        self._worker = None
        if self.state == "loading":
            self.state = self._state_before_load

    def _loaded(self, worker: WorkerProcess, info: ModelInfo) -> None:
        self.state, self._worker = "ready", worker
        self._paced = False  # a new worker starts unpaced
        self.counts["loads"] += 1
        self._memory_hint = info.memory_bytes
        self.last_error = None
        if self._last_failure == "load":
            self._backoff.reset()  # a successful load forgives earlier load failures, not crashes
        self._learn(ModelTraits(tool_parser=info.tool_parser, thinking=info.thinking))

    def _load_failed(self, reason: str) -> None:
        self._worker = None
        if self.state == "loading":  # else closed meanwhile
            self.counts["load_failures"] += 1
            self._fail("load", reason, first_free=False)

    def _crashed(self, worker: WorkerProcess) -> None:
        self.counts["crashes"] += 1
        self._worker = None
        assert worker.ready_at is not None
        if time.monotonic() - worker.ready_at >= STABLE_AFTER:
            self._backoff.reset()
        self._fail("crash", f"its worker exited unexpectedly ({worker.exit_text})", first_free=True)

    def _fail(self, kind: Literal["load", "crash"], reason: str, *, first_free: bool) -> None:
        self.last_error, self._last_failure, self.state = reason, kind, "backoff"
        self._backoff.failed(first_free=first_free)
        delay = self._backoff.remaining()
        if delay > 0:
            self._retry = asyncio.get_running_loop().call_later(delay, self._backoff_over)
        else:
            self._backoff_over()

    def _backoff_over(self) -> None:
        self._retry = None
        if self.state == "backoff":
            self.state = "failed" if self._last_failure == "load" else "crashed"

    def _unloaded(self) -> WorkerProcess:
        assert self.state == "ready" and self._worker is not None
        worker, self._worker, self.state = self._worker, None, "unloaded"
        return worker

    def _close(self) -> None:
        self.state = "closed"
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    # ------------------------------------------------------------ pool member

    @property
    def holds_slot(self) -> bool:
        return self.state in ("loading", "ready")

    @property
    def busy(self) -> bool:
        return self.state == "loading" or self._in_flight > 0

    @property
    def memory_bytes(self) -> int:
        """What the loaded model holds now (its worker's latest report); before it reports, its size at load."""
        worker = self._worker
        if worker is not None and worker.memory is not None:
            return worker.memory.total
        return worker.info.memory_bytes if worker is not None and worker.info is not None else self._memory_hint

    def pace(self, on: bool) -> None:
        worker = self._worker
        if on != self._paced and worker is not None and self.state == "ready":
            self._paced = on
            worker.pace(on)

    def _memory_reported(self, use: MemoryUse) -> None:
        """KV caches and the prefix cache grow as the model works: past `mlx.max_memory_gb`, idle models go."""
        if self.pool.over_memory_cap() and (self._making_room is None or self._making_room.done()):
            self._making_room = asyncio.get_running_loop().create_task(
                self.pool.enforce_memory_cap(self), name=f"mlx-make-room:{self.name}"
            )

    @property
    def idle_unload_seconds(self) -> float | None:
        return self.spec.idle_unload_seconds

    async def unload(self, reason: str) -> None:
        async with self._lock:
            if self.state != "ready":
                return
            await self._stop(self._unloaded(), reason)
        self.pool.notify()

    async def _stop(self, worker: WorkerProcess, reason: str) -> None:
        await worker.stop()
        self.counts["unloads"] += 1
        if reason.startswith("evicted"):
            self.counts["evictions"] += 1
        log.info("mlx_model_unloaded", model=self.name, reason=reason)

    # ------------------------------------------------------------ capabilities

    @property
    def capabilities(self) -> Capabilities:
        """What the plan may rely on: known from the model's files before it is ever loaded (see traits.py)."""
        traits = self._known_traits()
        if traits is None:
            return ASSUMED
        return Capabilities(tool_calling=traits.tool_parser is not None, vision=False, reasoning=traits.thinking,
                            constrains_json=True, constrains_calls=traits.tool_parser in CALL_GRAMMARS)

    async def capabilities_ready(self) -> Capabilities:
        """`capabilities`, loading the model first when only its load can tell (an hf: model not downloaded yet)."""
        if self._known_traits() is None:
            await self._ready_worker()
        return self.capabilities

    def _known_traits(self) -> ModelTraits | None:
        if not self._probed:  # used before `start()`, which probes in a thread
            self._adopt_probe(probe(self.spec, self.pool.settings.allowed_paths))
        return self._traits

    def _adopt_probe(self, traits: ModelTraits | None) -> None:
        if not self._probed:
            self._probed = True
            self._traits = self._traits or traits

    def _learn(self, loaded: ModelTraits) -> None:
        if self._traits is not None and self._traits != loaded:
            log.warning("mlx_capabilities_differ", model=self.name, from_files=self._traits, loaded=loaded)
        self._probed, self._traits = True, loaded

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self._probed:
            self._adopt_probe(await asyncio.to_thread(probe, self.spec, self.pool.settings.allowed_paths))
        if self.spec.preload:
            self._preload = asyncio.get_running_loop().create_task(self._warm(), name=f"mlx-preload:{self.name}")

    async def _warm(self) -> None:
        try:
            await self._ready_worker()
        except ModelUnavailable as exc:
            log.warning("mlx_preload_failed", model=self.name, reason=exc.message)

    async def aclose(self) -> None:
        self._close()  # no new loads from here on
        for task in (self._preload, self._load_task, self._making_room):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        async with self._lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                await self._stop(worker, "closed")
        self.pool.leave(self)

    async def _ready_worker(self) -> WorkerProcess:
        """The running worker, loading it first if needed. The load is its own task, so a
        client that leaves during a long load does not abort it for everyone else."""
        if self.state == "ready":
            assert self._worker is not None
            return self._worker
        if self._load_task is None or self._load_task.done():
            if self.state == "closed":
                raise ModelUnavailable(f"The model '{self.name}' is shutting down.")
            if self.state == "backoff":
                wait = self._backoff.remaining()
                raise ModelUnavailable(
                    f"The model '{self.name}' is unavailable ({self.last_error}); next attempt in {wait:.0f} s."
                )
            self._load_task = asyncio.get_running_loop().create_task(self._load(), name=f"mlx-load:{self.name}")
        return await asyncio.shield(self._load_task)

    async def _load(self) -> WorkerProcess:
        async with self._lock:
            if self.state == "closed":
                raise ModelUnavailable(f"The model '{self.name}' is shutting down.")
            self._begin_load()  # holds a slot from here on, as the pool requires
            try:
                await self.pool.admit(self, self._memory_hint)  # no room is not the model's failure: no backoff
            except BaseException:
                self._load_abandoned()
                self.pool.notify()
                raise
            worker = self._worker = WorkerProcess(
                self.spec,
                cache_dir=str(self.pool.cache_dir),
                threads=self.spec.threads or self.pool.threads_per_worker(),
                allowed_paths=self.pool.settings.allowed_paths,  # the running manifest's, checked by the worker
                on_exit=self._worker_exited,
                on_memory=self._memory_reported,
            )
            try:
                info = await worker.start()
                if not worker.alive:  # died between its Ready and now: its exit was not a crash of a ready worker
                    raise ModelUnavailable(f"The worker for '{self.name}' exited right after loading "
                                           f"({worker.exit_text}).")
            except ModelUnavailable as exc:
                await worker.stop(grace=0)
                self._load_failed(exc.message)
                raise
            except BaseException:
                await worker.stop(grace=0)  # never leave a half-started process behind
                self._load_abandoned()
                raise
            finally:
                self.pool.notify()
            self._loaded(worker, info)
        await self.pool.enforce_memory_cap(self)
        return worker

    def _worker_exited(self, worker: WorkerProcess) -> None:
        if worker.stopping or worker.ready_at is None or worker is not self._worker or self.state != "ready":
            return  # asked to stop, never loaded (reported as a load failure), or not the current worker
        self._crashed(worker)
        self.pool.notify()

    # ------------------------------------------------------------ requests

    async def open(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """A ready worker with room gets the request at once (it renders and prefills while the first events are
        written); otherwise it goes when the stream is first read, where a load, a full queue or a dead worker
        fails the response as any model error does."""
        worker = self._worker
        if self.state != "ready" or worker is None or not worker.alive or self._in_flight >= self._capacity:
            return self.generate(request)
        self._in_flight += 1
        self.last_used = time.monotonic()
        stream = worker.open(request)
        first_token = FirstTokenWait(self.pool, self)
        return SentStream(self.generate(request, (worker, stream, first_token)),
                          lambda: self._release(request, worker, first_token, finished=False))

    async def generate(self, request: GenerationRequest,
                       sent: tuple[WorkerProcess, asyncio.Queue[Any], FirstTokenWait] | None = None,
                       ) -> AsyncGenerator[Delta, None]:
        """The request's deltas; `sent`: it is on its worker already (from `open`), with its place counted."""
        worker, stream, first_token = sent if sent is not None else (None, None, None)
        if sent is None:
            self._in_flight += 1
            self.last_used = time.monotonic()
        finished = False
        try:
            if worker is None or stream is None:
                if self._in_flight > self._capacity:
                    raise RateLimited(
                        f"The model '{self.name}' is busy: {self.spec.max_batch} requests are being generated and "
                        f"{self.spec.max_queued} more are waiting (max_batch, max_queued); try again shortly."
                    )
                worker = await self._ready_worker()
                stream = worker.open(request)
                first_token = FirstTokenWait(self.pool, self)
            while not finished:
                item = await stream.get()
                if first_token is not None:
                    first_token.over()
                if isinstance(item, BaseException):
                    raise item
                for delta in item:  # call ids are the assembler's to assign
                    finished = isinstance(delta, Finish)
                    yield delta
                    if finished:
                        break
        finally:
            self._release(request, worker, first_token, finished=finished)

    @property
    def _capacity(self) -> int:
        """Requests this model takes at once: generated together, then queued (more get 429)."""
        return self.spec.max_batch + self.spec.max_queued

    def _release(self, request: GenerationRequest, worker: WorkerProcess | None, first_token: FirstTokenWait | None,
                 *, finished: bool) -> None:
        """The request is over for the gateway: stop waiting for it, cancel it in the worker unless it finished."""
        if first_token is not None:
            first_token.over()
        if worker is not None:
            worker.close_stream(request.request_id, cancel=not finished)
        self.counts["served"] += finished
        self._in_flight -= 1
        self.last_used = time.monotonic()
        self.pool.notify()

    async def count_input_tokens(self, request: GenerationRequest) -> int:
        """Exactly what generation would prompt with: the model's own template and tokenizer, in its worker."""
        return len((await self.render(request)).tokens)

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
        out: dict[str, Any] = {
            "adapter": "mlx",
            "source": self.spec.source,
            "state": self.state,
            "paced": self._paced,
            "active": self._in_flight,
            "queued": max(0, self._in_flight - self.spec.max_batch),
            "idle_seconds": round(time.monotonic() - self.last_used, 1),
            **self.counts,
            "last_error": self.last_error,
        }
        if self._traits is not None:
            out["tool_parser"] = self._traits.tool_parser
            out["thinking"] = self._traits.thinking
        worker = self._worker
        if worker is not None:
            out["pid"] = worker.pid
            out["threads"] = worker.threads
            out["stage"] = worker.status
            if worker.progress[1]:
                out["progress"] = {"done": worker.progress[0], "total": worker.progress[1]}
            if worker.info is not None:
                out["memory_mb"] = round(self.memory_bytes / 2**20, 2)
                out["memory_bytes"] = self.memory_bytes
            if worker.memory is not None:
                out["memory"] = msgspec.structs.asdict(worker.memory)
            if worker.prefix_cache:
                out["prefix_cache"] = worker.prefix_cache
            if worker.cancels:
                last = worker.cancels[-1]
                out["last_cancel"] = {"generated": last.generated, "after_cancel": last.after_cancel}
        return out

