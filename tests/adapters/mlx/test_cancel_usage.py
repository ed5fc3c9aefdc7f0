"""A response stopped before its end still says what it cost: the worker's counts travel with its deltas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import parse_config
from tests.conftest import serve
from tests.sse import iter_response_events

pytestmark = pytest.mark.mlx


@pytest.fixture(scope="module")
def base(mlx_cache: Path) -> Iterator[str]:
    manifest = f"""
mlx: {{cache_dir: {json.dumps(str(mlx_cache))}}}
models:
  - {{name: slow, adapter: mlx, source: dummy, testing: {{force: last_user, step_delay_ms: 40}}}}
"""
    with serve(parse_config(manifest)) as url:
        yield url


def test_a_cancelled_background_response_carries_its_output_and_usage(base: str) -> None:
    text = " ".join(f"word{i}" for i in range(80))
    with httpx.Client(base_url=base, timeout=60) as http, httpx.Client(base_url=base, timeout=60) as other:
        body = {"model": "slow", "input": text, "background": True, "stream": True}
        with http.stream("POST", "/v1/responses", json=body) as response:
            deltas = 0
            for _, event in iter_response_events(response):
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                deltas += event["type"] == "response.output_text.delta"
                if deltas == 5:  # generating: cancel from another connection
                    cancelled = other.post(f"/v1/responses/{response_id}/cancel").json()
                    break
        later = other.get(f"/v1/responses/{response_id}").json()
    assert cancelled["status"] == "cancelled" and cancelled == later
    generated = cancelled["output"][0]["content"][0]["text"]
    assert generated and text.startswith(generated.strip())
    usage = cancelled["usage"]
    assert usage["input_tokens"] > len(text.split()) and 0 < usage["output_tokens"] < len(text.split()) * 4
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
