"""Hot reload of the manifest: on a file change, SIGHUP, or the admin endpoint.

The new manifest is validated in full before anything changes; an invalid one is
logged, shown in /health, and the running one keeps serving. A valid one is
swapped in atomically by `Runtime.apply` (in-flight requests keep their snapshot).
Settings that only take effect at start-up (listen address, body limit, store URL)
keep their running values and are reported as needing a restart: only when the file
asks for something new, so a value the command line overrode (`--host`, `--port`) is
compared with what the file said at start-up, not with the override.

Whether the running manifest is the file's current content, how many reloads were
applied or rejected and when the last one succeeded are in `describe()` (/health,
/status.json, /metrics).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog
import watchfiles

from gateway.config import ConfigError, GatewayConfig, apply_environment, parse_config
from gateway.runtime import Runtime

__all__ = ["ReloadFailed", "Reloader", "restart_only_changes"]

log = structlog.get_logger()


class ReloadFailed(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def restart_only_changes(
    running: GatewayConfig, new: GatewayConfig, started_from: GatewayConfig | None = None
) -> tuple[GatewayConfig, list[str]]:
    """Keep start-up-only settings at their running values; name the ones a restart would change.

    `started_from` is the manifest file as the gateway started from it: a running value that differs from it came
    from the command line or the environment, so the new file asks for a restart only if it differs from both.
    """
    baseline = started_from or running
    changed = []
    server = new.server
    for field in ("host", "port", "max_body_bytes", "watch_manifest"):
        wanted = getattr(new.server, field)
        if getattr(running.server, field) != wanted:
            server = msgspec.structs.replace(server, **{field: getattr(running.server, field)})
            if getattr(baseline.server, field) != wanted:
                changed.append(f"server.{field}")
    store = new.store
    if running.store != new.store:
        store = running.store
        if baseline.store != new.store:
            changed.append("store")
    return msgspec.structs.replace(new, server=server, store=store), changed


class Reloader:
    def __init__(self, runtime: Runtime, path: str | Path) -> None:
        self.runtime = runtime
        self.path = Path(path).resolve()
        self.last_error: list[str] | None = None
        self.last_reload_at: float | None = None
        self.restart_required: list[str] = []
        self.counts = {"ok": 0, "rejected": 0}
        self.last_success_at = time.time()  # the start-up load counts as the first success
        self.last_rejected_at: float | None = None
        self._digest = self._read_digest()
        self._applied = self._digest  # the digest of the file text the running manifest came from
        self._started_from = self._parse_quietly()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def _parse(self, text: bytes) -> GatewayConfig:
        return apply_environment(parse_config(text, source=str(self.path)), str(self.path), os.environ)

    def _parse_quietly(self) -> GatewayConfig | None:
        """The file as the gateway starts from it (None if it cannot be read or parsed any more)."""
        try:
            return self._parse(self.path.read_bytes())
        except (OSError, ConfigError):
            return None

    async def reload(self, reason: str) -> dict[str, Any]:
        """Validate and apply the manifest on disk; raises `ReloadFailed` if it is invalid."""
        async with self._lock:
            try:
                text = self.path.read_bytes()
            except OSError as exc:
                return self._failed(reason, [f"cannot read the manifest: {exc.strerror or exc}"])
            digest = self._digest = hashlib.sha256(text).hexdigest()
            try:
                config = self._parse(text)
            except ConfigError as exc:
                return self._failed(reason, exc.problems)
            config, self.restart_required = restart_only_changes(self.runtime.config, config, self._started_from)
            result = await self.runtime.apply(config)
            self.last_error = None
            self.last_reload_at = self.last_success_at = time.time()
            self.counts["ok"] += 1
            self._applied = digest
            log.info("manifest_reloaded", reason=reason, version=result.version)
            if self.restart_required:
                log.warning("manifest_restart_required", settings=self.restart_required)
            return {**result.as_dict(), "reason": reason, "restart_required": self.restart_required}

    def _failed(self, reason: str, problems: list[str]) -> dict[str, Any]:
        self.last_error = problems
        self.counts["rejected"] += 1
        self.last_rejected_at = time.time()
        log.error("manifest_rejected", reason=reason, path=str(self.path), problems=problems)
        raise ReloadFailed(problems)

    # ------------------------------------------------------------- triggers

    def start(self) -> None:
        if self.runtime.config.server.watch_manifest:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (RuntimeError, ValueError, NotImplementedError):
            log.info("sighup_reload_unavailable")  # not the main thread (tests), or no SIGHUP here

    async def stop(self) -> None:
        self._stop.set()
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (RuntimeError, ValueError, NotImplementedError):
            pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _on_sighup(self) -> None:
        asyncio.get_running_loop().create_task(self._quiet_reload("sighup"))

    async def _quiet_reload(self, reason: str) -> None:
        try:
            await self.reload(reason)
        except ReloadFailed:
            pass  # logged and shown in /health; the running manifest stays

    async def _watch(self) -> None:
        # Watch the directory: editors replace files by rename, which a file watch would lose.
        def is_manifest(change: watchfiles.Change, path: str) -> bool:
            return Path(path).resolve() == self.path

        while not self._stop.is_set():
            try:
                async for _ in watchfiles.awatch(
                    self.path.parent, watch_filter=is_manifest, step=50, stop_event=self._stop, recursive=False
                ):
                    if self._read_digest() != self._digest:
                        await self._quiet_reload("file_changed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("manifest_watch_failed", error=str(exc))
                await asyncio.sleep(1.0)

    def matches_file(self) -> bool:
        """Whether the running manifest is what the file holds now: False after a rejected reload, and while an
        edit waits for its reload (SIGHUP or /admin/reload with `watch_manifest: false`). Restart-only settings
        are not compared (they are listed under `restart_required`)."""
        return self._read_digest() == self._applied

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.runtime.snapshot.version,
            "matches_file": self.matches_file(),
            "last_reload_at": self.last_reload_at,
            "last_success_at": self.last_success_at,
            "last_rejected_at": self.last_rejected_at,
            "last_error": self.last_error,
            "restart_required": self.restart_required,
            "reloads": dict(self.counts),
        }
