"""Shared fixtures: manifests from YAML text, an in-process client, and a real server on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent

SCRIPTED = """
models:
  - name: scripted
    aliases: [demo]
    adapter: scripted
    script:
      chunk_chars: 5
      steps:
        - reasoning: "I should run a command."
          text: "Running it."
          calls:
            - function: exec_command
              arguments: {cmd: "echo hi"}
        - text: "The command printed hi."
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 4096}
"""


def make_config(text: str = SCRIPTED) -> GatewayConfig:
    return parse_config(text)


FIGURES = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> list[str]:
    """Lines a test appends here are printed at the end of the run (fault, fuzz and load figures for CI logs)."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def config() -> GatewayConfig:
    return make_config()


@pytest.fixture
def client(config: GatewayConfig) -> Iterator[TestClient]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@contextmanager
def serve(
    config: GatewayConfig, manifest_path: str | Path | None = None, uds: str | Path | None = None
) -> Iterator[str]:
    """Run the gateway with uvicorn on 127.0.0.1 (ephemeral port), and on a Unix socket if `uds` is given.

    Yields the TCP base URL.
    """
    app = create_app(config, manifest_path=manifest_path)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    )
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 0))
    sockets = [tcp]
    if uds is not None:
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(uds))
        sockets.append(unix)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = tcp.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def live(config: GatewayConfig) -> Iterator[str]:
    with serve(config) as base_url:
        yield base_url


@pytest.fixture
def serve_config() -> Callable[[str], object]:
    return lambda text: serve(make_config(text))
