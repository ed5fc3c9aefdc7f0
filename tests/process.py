"""`gateway run` as a real subprocess on a free loopback port, for tests that need signals or several processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["GatewayProcess", "environ", "free_port", "wait_for"]


def wait_for(probe: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
    """Poll `probe` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # type: ignore[no-any-return]


class GatewayProcess:
    """Starts `python -m gateway run`, waits until /health answers; the log (stderr) goes to a file."""

    def __init__(self, manifest: Path, log: Path, *, port: int | None = None, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        command = [sys.executable, "-m", "gateway", "run", "--config", str(manifest), "--port", str(self.port),
                   "--log-format", "json", *extra_args]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink,
                                            env=dict(env) if env is not None else None, cwd=cwd)

    def wait_healthy(self, timeout: float = 30) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process and wait for it; kills it if it does not exit in time. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> GatewayProcess:
        try:
            return self.wait_healthy()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def environ(**overrides: str | Path) -> dict[str, str]:
    return {**os.environ, **{key: str(value) for key, value in overrides.items()}}
