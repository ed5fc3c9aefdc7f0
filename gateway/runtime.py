"""What a running gateway holds: the current snapshot (manifest + one adapter per model).

A request takes the snapshot once and keeps it to the end, so a reload never changes
a request half-way. Each request leases its adapter; an adapter that a reload
replaced or removed is closed once its last lease is returned (or after the drain
deadline, which ends the stragglers with `response.failed`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from gateway.adapters import WorkerPool, build_adapter
from gateway.adapters.base import Adapter
from gateway.config import GatewayConfig, MlxModel, ModelSpec
from gateway.constraints import EngineChecks
from gateway.errors import GatewayError, ServiceUnavailable

__all__ = ["Lease", "ReloadResult", "Runtime", "Snapshot"]

log = structlog.get_logger()

AdapterFactory = Callable[[ModelSpec], Adapter]


class Snapshot:
    __slots__ = ("adapters", "config", "version")

    def __init__(self, config: GatewayConfig, adapters: Mapping[str, Adapter], version: int) -> None:
        self.config = config
        self.adapters = adapters
        self.version = version


class Lease:
    """One request's hold on an adapter; `release()` is idempotent."""

    __slots__ = ("_released", "_runtime", "adapter")

    def __init__(self, runtime: Runtime, adapter: Adapter) -> None:
        self._runtime = runtime
        self.adapter = adapter
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._runtime._release(self.adapter)


class ReloadResult:
    __slots__ = ("kept", "retired", "started", "version")

    def __init__(self, version: int, kept: list[str], started: list[str], retired: list[str]) -> None:
        self.version = version
        self.kept = kept
        self.started = started
        self.retired = retired

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "kept": self.kept, "started": self.started, "retired": self.retired}


class Runtime:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        adapter_factory: AdapterFactory | None = None,
        drain_seconds: float = 300.0,
    ) -> None:
        self.pool = WorkerPool(config.mlx)  # shared by every mlx model: load caps, eviction, idle unload
        self.checks = EngineChecks()  # grammar and schema verdicts, shared by every request
        self._factory = adapter_factory or (lambda spec: build_adapter(spec, self.pool))
        self._drain_seconds = drain_seconds
        self._leases: dict[int, int] = {}
        self._retiring: dict[int, Adapter] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.snapshot = Snapshot(config, {m.name: self._factory(m) for m in config.models}, version=1)
        self.draining = False
        self.aborts: set[Callable[[GatewayError], None]] = set()  # one per running generation
        self.started_at = int(time.time())

    @property
    def config(self) -> GatewayConfig:
        return self.snapshot.config

    async def start(self) -> None:
        for adapter in self.snapshot.adapters.values():
            await adapter.start()

    def begin_drain(self, grace_seconds: float) -> None:
        """Shutting down: refuse new work now; after the grace period, end what still runs with response.failed."""
        self.draining = True
        log.info("draining", in_flight=len(self.aborts), grace_seconds=grace_seconds)

        def abort_all() -> None:
            error = ServiceUnavailable("The gateway shut down before the response finished.",
                                       code="server_shutting_down")
            for abort in list(self.aborts):
                abort(error)

        asyncio.get_running_loop().call_later(grace_seconds, abort_all)

    async def aclose(self) -> None:
        adapters = [*self.snapshot.adapters.values(), *self._retiring.values()]
        self._retiring.clear()
        for task in list(self._closing):
            task.cancel()
        for adapter in adapters:
            await adapter.aclose()
        await self.pool.aclose()

    # ----------------------------------------------------------------- leases

    def lease(self, adapter: Adapter) -> Lease:
        self._leases[id(adapter)] = self._leases.get(id(adapter), 0) + 1
        return Lease(self, adapter)

    def _release(self, adapter: Adapter) -> None:
        key = id(adapter)
        remaining = self._leases.get(key, 1) - 1
        if remaining > 0:
            self._leases[key] = remaining
            return
        self._leases.pop(key, None)
        retired = self._retiring.pop(key, None)
        if retired is not None:
            self._close_later(retired, delay=0.0)

    def in_flight(self, adapter: Adapter) -> int:
        return self._leases.get(id(adapter), 0)

    # ----------------------------------------------------------------- reload

    async def apply(self, config: GatewayConfig) -> ReloadResult:
        """Swap to a validated manifest; unchanged models keep their adapter (and its loaded weights)."""
        async with self._lock:
            old = self.snapshot
            self.pool.configure(config.mlx)
            old_specs = {m.name: m for m in old.config.models}
            adapters: dict[str, Adapter] = {}
            kept, started = [], []
            for spec in config.models:
                previous = old_specs.get(spec.name)
                if previous is not None and previous == spec:
                    adapters[spec.name] = old.adapters[spec.name]
                    kept.append(spec.name)
                else:
                    adapter = self._factory(spec)
                    await adapter.start()
                    adapters[spec.name] = adapter
                    started.append(spec.name)
            self.snapshot = Snapshot(config, adapters, version=old.version + 1)
            retired = [name for name, adapter in old.adapters.items() if adapters.get(name) is not adapter]
            for name in retired:
                self._retire(old.adapters[name])
            log.info("manifest_applied", version=self.snapshot.version, kept=kept, started=started, retired=retired)
            return ReloadResult(self.snapshot.version, kept, started, retired)

    def _retire(self, adapter: Adapter) -> None:
        if self.in_flight(adapter) == 0:
            self._close_later(adapter, delay=0.0)
        else:
            self._retiring[id(adapter)] = adapter
            self._close_later(adapter, delay=self._drain_seconds, only_if_retiring=True)

    def _close_later(self, adapter: Adapter, *, delay: float, only_if_retiring: bool = False) -> None:
        async def close() -> None:
            if delay:
                await asyncio.sleep(delay)
                if only_if_retiring and self._retiring.pop(id(adapter), None) is None:
                    return  # drained in time; the last lease closed it
            await adapter.aclose()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ----------------------------------------------------------------- state

    def health(self) -> dict[str, Any]:
        snapshot = self.snapshot
        return {
            "status": "ok",
            "manifest_version": snapshot.version,
            "models": {name: adapter.describe() for name, adapter in snapshot.adapters.items()},
            **({"mlx": self.pool.describe()} if any(isinstance(m, MlxModel) for m in snapshot.config.models) else {}),
        }
