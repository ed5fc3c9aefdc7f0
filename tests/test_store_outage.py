"""Redis goes away and comes back: store:false keeps working, the rest fails fast with a 503 envelope,
nothing is reported completed that was not stored, /health tells, and the gateway reconnects by itself."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_config, serve
from tests.redisproc import RedisProcess, need_redis_server
from tests.sse import response_events

pytestmark = pytest.mark.redis

MANIFEST = """
store: {{url: "{url}", key_prefix: "{prefix}", connect_timeout_seconds: 0.5, timeout_seconds: 1}}
models:
  - name: echo
    adapter: scripted
    script: {{mode: echo, chunk_chars: 100000}}
  - name: slowish
    adapter: scripted
    script: {{delay_ms: 25, chunk_chars: 1, steps: [{{text: "{text}"}}]}}
"""


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    need_redis_server()
    server = RedisProcess(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "store_unavailable" and error["type"] == "server_error" and error["message"]


def test_outage_and_recovery(redis_process: RedisProcess) -> None:
    manifest = MANIFEST.format(url=redis_process.url, prefix=f"mlxgw-test-{os.urandom(4).hex()}", text="z" * 60)
    with serve(make_config(manifest)) as base, httpx.Client(base_url=base, timeout=8) as http:
        before = http.post("/v1/responses", json={"model": "echo", "input": "kept while up"})
        assert before.status_code == 200
        assert http.get("/health").json()["store"]["state"] == "ok"

        # Redis dies while a stored response streams: the client never sees it completed.
        with http.stream("POST", "/v1/responses", json={"model": "slowish", "input": "x", "stream": True}) as streamed:
            text = ""
            for chunk in streamed.iter_text():
                text += chunk
                if "response.output_text.delta" in text and redis_process.process is not None:
                    redis_process.stop()
        events = response_events(text)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["code"] == "store_unavailable"
        assert all(e["type"] != "response.completed" for e in events)

        # Without the store: store:false works, streaming or not; everything needing it is a 503 at once.
        plain = http.post("/v1/responses", json={"model": "echo", "input": "hi", "store": False})
        assert plain.status_code == 200 and plain.json()["status"] == "completed"
        streamed_plain = http.post("/v1/responses", json={"model": "echo", "input": "hi", "store": False,
                                                          "stream": True})
        assert response_events(streamed_plain.text)[-1]["type"] == "response.completed"
        response_id = before.json()["id"]
        for call in (
            lambda: http.post("/v1/responses", json={"model": "echo", "input": "hi"}),
            lambda: http.post("/v1/responses", json={"model": "echo", "input": "hi", "stream": True}),
            lambda: http.post("/v1/responses", json={"model": "echo", "input": "hi", "background": True}),
            lambda: http.post("/v1/responses", json={"model": "echo", "input": "hi", "store": False,
                                                     "previous_response_id": response_id}),
            lambda: http.post("/v1/responses", json={"model": "echo", "store": False, "input": [
                {"type": "item_reference", "id": before.json()["output"][0]["id"]}]}),
            lambda: http.get(f"/v1/responses/{response_id}"),
            lambda: http.get(f"/v1/responses/{response_id}/input_items"),
            lambda: http.delete(f"/v1/responses/{response_id}"),
            lambda: http.post(f"/v1/responses/{response_id}/cancel"),
        ):
            assert_unavailable(call())
        health = http.get("/health").json()
        assert health["status"] == "degraded"
        assert health["store"]["state"] == "unavailable" and "Error" in health["store"]["error"]

        # Redis is back (empty: it keeps nothing on disk); the same gateway reconnects on its own.
        redis_process.start()
        deadline = time.monotonic() + 10
        while True:
            after = http.post("/v1/responses", json={"model": "echo", "input": "again"})
            if after.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after.status_code == 200, after.text
        follow_up = http.post("/v1/responses", json={"model": "echo", "input": "and on",
                                                     "previous_response_id": after.json()["id"]})
        seen = json.loads(follow_up.json()["output"][0]["content"][0]["text"])["messages"]
        assert [m["content"] for m in seen if m["role"] == "user"] == ["again", "and on"]
        store = http.get("/health").json()["store"]
        assert store["errors"] > 0  # the outage was counted
        assert {k: v for k, v in store.items() if k not in ("errors", "pool")} == {
            "backend": "redis", "url": redis_process.url, "state": "ok", "error": None
        }
        assert store["pool"]["in_use"] == 0 and store["pool"]["waiting"] == 0
