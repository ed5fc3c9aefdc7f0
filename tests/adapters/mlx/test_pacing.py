"""First-token priority through real workers: while one model waits for a request's first token, the others'
workers are paced (pool.py, engine.py), and run freely again once it has come."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import serve
from tests.process import wait_for

pytestmark = pytest.mark.mlx

LONG = " ".join(f"word{i}" for i in range(300))  # ~600 forced tokens


def _manifest(cache: Path, mlx: str = "") -> str:
    return (f"mlx: {{cache_dir: {json.dumps(str(cache))}{mlx}}}\nmodels:\n"
            "  - {name: a, adapter: mlx, source: dummy, testing: {force: last_user, step_delay_ms: 10}}\n"
            # every step of b, its prefill included, takes 1.5 s: a long wait for its first token
            "  - {name: b, adapter: mlx, source: dummy, testing: {force: last_user, step_delay_ms: 1500}}\n")


def _health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health", timeout=10).json()  # type: ignore[no-any-return]


def _stream_a(url: str, seen: list[float]) -> None:
    body = {"model": "a", "input": LONG, "stream": True, "max_output_tokens": 400}
    with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=120) as answer:
        for line in answer.iter_lines():
            if "output_text.delta" in line:
                seen.append(time.monotonic())


@pytest.mark.parametrize("priority", [True, False])
def test_a_model_streaming_is_paced_while_another_waits_for_its_first_token(mlx_cache: Path, priority: bool) -> None:
    with serve(parse_config(_manifest(mlx_cache, "" if priority else ", first_token_priority: false"))) as url:
        for model in ("a", "b"):  # both loaded
            assert httpx.post(f"{url}/v1/responses", json={"model": model, "input": "hi", "max_output_tokens": 1},
                              timeout=60).status_code == 200
        deltas: list[float] = []
        streaming = threading.Thread(target=_stream_a, args=(url, deltas))
        streaming.start()
        wait_for(lambda: len(deltas) > 3, timeout=30, what="a to stream")
        assert _health(url)["models"]["a"]["paced"] is False

        asked = threading.Thread(target=lambda: httpx.post(
            f"{url}/v1/responses", json={"model": "b", "input": "x", "max_output_tokens": 1}, timeout=60))
        asked.start()
        if priority:
            wait_for(lambda: _health(url)["models"]["a"]["paced"], timeout=5, what="a to be paced")
            state = _health(url)
            assert state["models"]["b"]["paced"] is False
            assert state["mlx"]["waiting_first_token"] == ["b"]
        else:
            time.sleep(1.0)
            assert _health(url)["models"]["a"]["paced"] is False
        asked.join(timeout=60)
        state = _health(url)
        assert state["models"]["a"]["paced"] is False and state["mlx"]["waiting_first_token"] == []
        streaming.join(timeout=120)
        assert not streaming.is_alive() and len(deltas) > 3
