"""Real engines for test_engines.py: forced mlx_lm.server processes, and what a gateway logged about its requests.

Each mlx_lm.server runs `forced_mlx_lm_server` (mlx_lm.server itself, its model made to say one fixed text); they are
started together so their model loads overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tests.process import GatewayProcess, free_port, wait_for

__all__ = ["logged_requests", "logged_since", "mlx_lm_servers"]


@contextmanager
def mlx_lm_servers(model_dir: Path, texts: Mapping[str, str], folder: Path) -> Iterator[dict[str, str]]:
    """One forced mlx_lm.server per entry of `texts` (name -> what it says); yields name -> base URL (no /v1)."""
    started: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    try:
        for name, text in texts.items():
            port, log = free_port(), folder / f"mlx-lm-{name}.log"
            command = [sys.executable, "-m", "tests.adapters.upstream.forced_mlx_lm_server", "--model", str(model_dir),
                       "--host", "127.0.0.1", "--port", str(port)]
            with log.open("wb") as sink:
                process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                           env={**os.environ, "FORCE_TEXT": text, "HF_HUB_OFFLINE": "1"})
            started[name] = (process, f"http://127.0.0.1:{port}", log)
        for name, server in started.items():
            wait_for(partial(_answers, *server), timeout=60, what=f"mlx_lm.server {name}")
        yield {name: base for name, (_, base, _) in started.items()}
    finally:
        for process, _, _ in started.values():
            process.kill()
            process.wait(timeout=10)


def _answers(process: subprocess.Popen[bytes], base: str, log: Path) -> bool:
    assert process.poll() is None, f"mlx_lm.server exited:\n{log.read_text(errors='replace')[-3000:]}"
    try:
        return httpx.get(f"{base}/v1/models", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def logged_requests(gateway: GatewayProcess, model: str) -> list[dict[str, Any]]:
    """The canonical log lines of `gateway`'s requests for `model`, oldest first."""
    lines = (json.loads(line) for line in gateway.log().splitlines() if line.startswith("{") and line.endswith("}"))
    return [line for line in lines if line.get("event") == "request" and line.get("model") == model]


def logged_since(gateway: GatewayProcess, model: str, before: int, count: int) -> list[dict[str, Any]]:
    """The `count` log lines for `model` after the first `before`, once they are there: a request is logged when its
    stream has ended, which can be a moment after the client read its last event."""
    wait_for(lambda: len(logged_requests(gateway, model)) >= before + count, timeout=10,
             what=f"{count} more logged {model} request(s)")
    lines = logged_requests(gateway, model)[before:]
    assert len(lines) == count, lines  # no request but the test's own
    return lines
