"""`--log-format json` means every line on stderr is JSON: the gateway's own events and uvicorn's, watchfiles'
and Python warnings' records, with the same keys."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.process import GatewayProcess, environ

MANIFEST = """
auth:
  keys:
    - {name: set, env: LOGTEST_KEY}
    - {name: unset, env: LOGTEST_UNSET_KEY}
models:
  - {name: m, adapter: scripted, script: {steps: [{text: "%s"}]}}
"""


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    parsed, plain = [], []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            plain.append(line)
    assert not plain, f"{len(plain)} of {len(lines)} lines are not JSON:\n" + "\n".join(plain)
    return parsed


def test_every_line_of_a_session_is_json(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(MANIFEST % "v1")
    env = environ(LOGTEST_KEY="log-key")
    env.pop("LOGTEST_UNSET_KEY", None)
    gateway = GatewayProcess(path, tmp_path / "gateway.log", env=env)
    with gateway, httpx.Client(base_url=gateway.base, timeout=10,
                               headers={"authorization": "Bearer log-key"}) as http:
        assert http.post("/v1/responses", json={"model": "m", "input": "x"}).status_code == 200
        path.write_text(MANIFEST % "v2")  # watchfiles notices, then the gateway reloads
        deadline = time.monotonic() + 10
        while http.get("/health").json()["manifest"]["version"] != 2:
            assert time.monotonic() < deadline, "the manifest change was not reloaded"
            time.sleep(0.05)
        gateway.stop(signal.SIGTERM)
    lines = json_lines(gateway.log())
    for line in lines:
        assert {"event", "level", "timestamp"} <= set(line), line
    by_logger = {(line.get("logger"), line["event"]) for line in lines}
    assert ("uvicorn.error", "Application startup complete.") in by_logger
    assert ("uvicorn.error", "Application shutdown complete.") in by_logger
    assert ("watchfiles.main", "1 change detected") in by_logger
    events = [line["event"] for line in lines]
    assert {"request", "manifest_reloaded", "draining"} <= set(events)
    unset = next(line for line in lines if line["event"] == "api_key_unset")
    assert unset["level"] == "warning" and unset["variable"] == "LOGTEST_UNSET_KEY"


def test_the_log_level_applies_to_every_library(tmp_path: Path) -> None:
    """`--log-level warning`: uvicorn's start-up lines and the request lines are filtered out, warnings are not."""
    path = tmp_path / "gateway.yaml"
    path.write_text("auth: {keys: [{name: unset, env: LOGTEST_UNSET_KEY}]}\n"
                    "models: [{name: m, adapter: scripted, script: {mode: echo}}]\n")
    env = environ()
    env.pop("LOGTEST_UNSET_KEY", None)
    gateway = GatewayProcess(path, tmp_path / "gateway.log", env=env, extra_args=("--log-level", "warning"))
    with gateway:
        httpx.get(f"{gateway.base}/health", timeout=10)
    lines = json_lines(gateway.log())
    assert {line["level"] for line in lines} <= {"warning", "error", "critical"}, lines
    assert [line["event"] for line in lines] == ["api_key_unset"]
