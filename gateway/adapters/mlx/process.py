"""The gateway's side of one worker process: start it, talk to it, notice when it dies.

One asyncio task reads the worker's frames and routes them: deltas to the queue of
the request they belong to, load results to whoever is starting the worker, logs to
the gateway's log. End of stream means the worker is gone; every request still
waiting on it then fails with `model_unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.adapters.base import GenerationRequest
from gateway.adapters.mlx import wire
from gateway.adapters.mlx.wire import (
    Cancel,
    Deltas,
    Done,
    Failed,
    Generate,
    Load,
    LoadFailed,
    LoadStatus,
    Log,
    Memory,
    MemoryUse,
    ModelInfo,
    Pace,
    Ready,
    Render,
    Rendered,
    Shutdown,
)
from gateway.config import MlxModel
from gateway.errors import ContextLengthExceeded, GatewayError, InvalidRequest, ModelUnavailable

__all__ = ["WorkerProcess"]

log = structlog.get_logger()

_ERRORS: dict[str, type[GatewayError]] = {
    "context_length_exceeded": ContextLengthExceeded,
    "invalid_request": InvalidRequest,
}


def _error(failed: Failed) -> GatewayError:
    cls = _ERRORS.get(failed.code)
    return cls(failed.message) if cls is not None else GatewayError(failed.message, code=failed.code)


class WorkerProcess:
    """A spawned worker for one model. `start()` returns once the model is loaded."""

    def __init__(
        self,
        spec: MlxModel,
        *,
        cache_dir: str,
        threads: int,
        allowed_paths: list[str] | None = None,
        on_exit: Callable[[WorkerProcess], None] | None = None,
        on_memory: Callable[[MemoryUse], None] | None = None,
    ) -> None:
        self.spec = spec
        self.allowed_paths = list(allowed_paths or [])
        self.on_exit = on_exit
        self.on_memory = on_memory
        self.memory: MemoryUse | None = None  # the latest report (None until the model has loaded)
        self.ready_at: float | None = None
        self.exit_text: str | None = None
        self.stopping = False
        self.cache_dir = cache_dir
        self.threads = threads
        self.info: ModelInfo | None = None
        self.status = "starting"
        self.progress = (0, 0)
        self.exit_reason: str | None = None
        self.last_done: Done | None = None
        self.prefix_cache: dict[str, int] = {}
        self.cancels: list[Done] = []
        self._process: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[ModelInfo] | None = None
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._renders: dict[str, asyncio.Future[Rendered]] = {}
        self._exited = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and not self._exited.is_set()

    @property
    def requests(self) -> int:
        return len(self._streams)

    async def start(self) -> ModelInfo:
        from gateway.adapters.mlx.worker import run_worker

        context = multiprocessing.get_context("spawn")  # never fork: MLX must start fresh
        ours, theirs = socket.socketpair()
        self._process = context.Process(
            target=run_worker, args=(theirs, self.threads), name=f"mlx-worker:{self.spec.name}", daemon=True
        )
        started = time.perf_counter()
        try:
            self._process.start()
        except BaseException:
            self._process = None  # never started: nothing to stop or kill later
            ours.close()
            raise
        finally:
            theirs.close()  # only the child holds its end, so its death reads as EOF here
        reader, self._writer = await asyncio.open_connection(sock=ours)
        self._ready = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(self._read(reader), name=f"mlx-reader:{self.spec.name}")
        self._send(Load(spec=self.spec, cache_dir=self.cache_dir, allowed_paths=self.allowed_paths))
        try:
            async with asyncio.timeout(self.spec.load_timeout_seconds):
                self.info = await asyncio.shield(self._ready)
        except TimeoutError:
            self._ready.cancel()  # nobody will look at a late answer
            await self.stop(grace=0)
            raise ModelUnavailable(
                f"The model '{self.spec.name}' did not load within {self.spec.load_timeout_seconds:g} s."
            ) from None
        except ModelUnavailable:
            await self.stop(grace=2)
            raise
        self.status = "ready"
        self.ready_at = time.monotonic()
        log.info(
            "mlx_worker_ready", model=self.spec.name, pid=self.pid, seconds=round(time.perf_counter() - started, 2),
            memory_mb=round(self.info.memory_bytes / 2**20, 1), tool_parser=self.info.tool_parser,
        )
        return self.info

    # ------------------------------------------------------------ requests

    def open(self, request: GenerationRequest) -> asyncio.Queue[Any]:
        """Send a request; its deltas (lists), or one exception, arrive on the returned queue."""
        self._check_alive()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[request.request_id] = queue
        self._send(Generate(request=request))
        return queue

    def pace(self, on: bool) -> None:
        if self.alive:
            self._send(Pace(on=on))

    def close_stream(self, request_id: str, *, cancel: bool) -> None:
        if self._streams.pop(request_id, None) is not None and cancel and self.alive:
            self._send(Cancel(request_id=request_id))

    async def render(self, request: GenerationRequest) -> Rendered:
        self._check_alive()
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self._renders[request.request_id] = future
        self._send(Render(request=request))
        try:
            return await future
        finally:
            self._renders.pop(request.request_id, None)

    def _check_alive(self) -> None:
        if not self.alive:
            raise ModelUnavailable(f"The worker for model '{self.spec.name}' is not running.")

    def _send(self, message: wire.WireMessage) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.encode(message))

    # ------------------------------------------------------------ reading

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(wire.HEADER_SIZE)
                body = await reader.readexactly(wire.frame_length(header))
                self._dispatch(wire.decode(body))
        except (asyncio.IncompleteReadError, ConnectionError, wire.FrameError):
            pass
        except Exception:
            log.exception("mlx_worker_protocol_error", model=self.spec.name)
        finally:
            await self._on_exit()

    def _dispatch(self, message: wire.WireMessage) -> None:
        if isinstance(message, Deltas):
            queue = self._streams.get(message.request_id)
            if queue is not None:
                queue.put_nowait(message.deltas)
        elif isinstance(message, Failed):
            queue = self._streams.get(message.request_id)
            if queue is not None:
                queue.put_nowait(_error(message))
            future = self._renders.get(message.request_id)
            if future is not None and not future.done():
                future.set_exception(_error(message))
        elif isinstance(message, Done):
            self.last_done = message
            if message.prefix_cache:
                self.prefix_cache = message.prefix_cache
            if message.outcome == "cancelled":
                self.cancels = [*self.cancels[-9:], message]
        elif isinstance(message, Memory):
            self.memory = message.use
            if self.on_memory is not None:
                self.on_memory(message.use)
        elif isinstance(message, Rendered):
            future = self._renders.get(message.request_id)
            if future is not None and not future.done():
                future.set_result(message)
        elif isinstance(message, LoadStatus):
            self.status, self.progress = message.stage, (message.done, message.total)
        elif isinstance(message, Ready):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message.info)
        elif isinstance(message, LoadFailed):
            self.exit_reason = message.reason
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(
                    ModelUnavailable(f"The model '{self.spec.name}' failed to load: {message.reason}")
                )
        elif isinstance(message, Log):
            fields = {k: v for k, v in message.fields.items() if k not in _RESERVED}
            log.log(_LEVELS.get(message.level, 20), message.event, model=self.spec.name, source="mlx_worker", **fields)

    async def _on_exit(self) -> None:
        if self._writer is not None:
            self._writer.close()
        code = await asyncio.to_thread(self._reap)
        self._exited.set()
        why = self.exit_text = _exit_text(code)
        if self.stopping:
            log.info("mlx_worker_stopped", model=self.spec.name, pid=self.pid, exit=why)
        else:
            log.warning("mlx_worker_exited", model=self.spec.name, pid=self.pid, exit=why, stage=self.status)
        failure = ModelUnavailable(f"The worker for model '{self.spec.name}' exited ({why}) during this request.")
        for queue in self._streams.values():
            queue.put_nowait(failure)
        self._streams.clear()
        for future in self._renders.values():
            if not future.done():
                future.set_exception(failure)
        if self._ready is not None and not self._ready.done():
            reason = self.exit_reason or f"the worker exited while loading ({why})"
            self._ready.set_exception(ModelUnavailable(f"The model '{self.spec.name}' failed to load: {reason}"))
        self.status = "exited"
        if self.on_exit is not None:
            self.on_exit(self)

    def _reap(self) -> int | None:
        self._process.join(timeout=5)
        return self._process.exitcode

    async def stop(self, grace: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it has not within `grace` seconds."""
        if self._process is None:
            return
        self.stopping = True
        if not self._exited.is_set():
            self._send(Shutdown())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._exited.wait()
        if not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._exited.wait()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_RESERVED = frozenset({"event", "model", "source", "level"})


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
