"""Two `gateway run` processes on different ports sharing the Redis at :6379 behave as one service."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.process import GatewayProcess, wait_for
from tests.redisproc import SHARED_URL, need_shared_redis
from tests.sse import response_events

pytestmark = pytest.mark.redis

MANIFEST = """
server: {{keepalive_seconds: 0.3}}
store: {{url: "{url}", key_prefix: "{prefix}"}}
models:
  - name: echo
    adapter: scripted
    script: {{mode: echo, chunk_chars: 100000}}
  - name: medium
    adapter: scripted
    script: {{delay_ms: 15, chunk_chars: 1, steps: [{{text: "{medium}"}}]}}
  - name: slow
    adapter: scripted
    script: {{delay_ms: 30, chunk_chars: 1, steps: [{{text: "{slow}"}}]}}
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    need_shared_redis()
    prefix = f"mlxgw-test-{os.urandom(6).hex()}"
    folder = tmp_path_factory.mktemp("replicas")
    manifest = folder / "gateway.yaml"
    manifest.write_text(MANIFEST.format(url=SHARED_URL, prefix=prefix, medium="m" * 60, slow="s" * 400))
    gateways: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            gateways.append(GatewayProcess(manifest, folder / f"{name}.log").wait_healthy())
        yield gateways[0].base, gateways[1].base
    finally:
        for gateway in gateways:
            gateway.stop()
        client = redis.Redis.from_url(SHARED_URL)
        for key in client.scan_iter(match=f"{prefix}:{{*", count=1000):
            client.delete(key)
        client.close()




def test_a_chain_started_on_one_replica_continues_on_the_other(replicas: tuple[str, str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=10) as http:
        first = http.post(f"{a}/v1/responses", json={"model": "echo", "input": "one"}).json()
        second = http.post(f"{b}/v1/responses", json={"model": "echo", "input": "two",
                                                       "previous_response_id": first["id"]})
        assert second.status_code == 200, second.text
        seen = json.loads(second.json()["output"][0]["content"][0]["text"])["messages"]
        assert [m["content"] for m in seen if m["role"] == "user"] == ["one", "two"]
        assert http.get(f"{a}/v1/responses/{second.json()['id']}").json() == second.json()
        ref = http.post(f"{a}/v1/responses", json={"model": "echo", "input": [
            {"type": "item_reference", "id": first["output"][0]["id"]}, {"role": "user", "content": "three"}]})
        assert ref.status_code == 200, ref.text
        assert http.delete(f"{b}/v1/responses/{first['id']}").status_code == 200
        assert http.get(f"{a}/v1/responses/{first['id']}").status_code == 404


def test_a_background_response_started_on_one_streams_from_the_other(replicas: tuple[str, str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=20) as http:
        started = http.post(f"{a}/v1/responses", json={"model": "medium", "input": "x", "background": True}).json()
        assert started["status"] == "queued"
        events = response_events(http.get(f"{b}/v1/responses/{started['id']}", params={"stream": "true"}).text)
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "m" * 60
        assert http.get(f"{a}/v1/responses/{started['id']}").json() == events[-1]["response"]
        tail = response_events(http.get(f"{a}/v1/responses/{started['id']}",
                                   params={"stream": "true", "starting_after": len(events) - 3}).text)
        assert tail == events[-2:]


def test_a_background_response_started_on_one_is_cancelled_from_the_other(replicas: tuple[str, str]) -> None:
    a, b = replicas
    with httpx.Client(timeout=10) as http:
        started = http.post(f"{a}/v1/responses", json={"model": "slow", "input": "x", "background": True}).json()
        wait_for(lambda: http.get(f"{b}/v1/responses/{started['id']}").json()["status"] == "in_progress")
        wait_for(lambda: http.get(f"{a}/health").json()["models"]["slow"]["active"] == 1)  # a is generating
        cancelled = http.post(f"{b}/v1/responses/{started['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        # The answer already holds what the owner generated before it stopped, as a later GET does.
        answered = cancelled.json()["output"][0]["content"][0]["text"]
        assert 0 < len(answered) < 400
        # ... and what it cost until the stop (the scripted model counts one token per character)
        usage = cancelled.json()["usage"]
        assert usage["input_tokens"] > 0 and len(answered) - 1 <= usage["output_tokens"] <= len(answered)
        # The owner (a) notices through Redis and stops its model long before the 12 s script ends.
        wait_for(lambda: http.get(f"{a}/health").json()["models"]["slow"]["active"] == 0, timeout=5)
        events = response_events(http.get(f"{a}/v1/responses/{started['id']}", params={"stream": "true"}).text)
        assert events[-1]["type"] == "error" and events[-1]["code"] == "response_cancelled"
        final = wait_for(lambda: (r := http.get(f"{a}/v1/responses/{started['id']}").json())["output"] and r)
        assert final["status"] == "cancelled" and final["output"][0]["content"][0]["text"] == answered


def test_a_gateway_that_stops_ends_its_background_responses_as_failed() -> None:
    from tests.conftest import make_config, serve

    need_shared_redis()
    prefix = f"mlxgw-test-{os.urandom(6).hex()}"
    config = make_config(MANIFEST.format(url=SHARED_URL, prefix=prefix, medium="m", slow="s" * 400))
    try:
        with serve(config) as base, httpx.Client(base_url=base, timeout=10) as http:
            started = http.post("/v1/responses", json={"model": "slow", "input": "x", "background": True}).json()
            wait_for(lambda: http.get("/health").json()["models"]["slow"]["active"] == 1)
        with serve(config) as base, httpx.Client(base_url=base, timeout=10) as http:
            final = http.get(f"/v1/responses/{started['id']}").json()
            assert final["status"] == "failed" and final["error"]["code"] == "server_shutdown"
            events = response_events(http.get(f"/v1/responses/{started['id']}", params={"stream": "true"}).text)
            assert events[-1]["type"] == "response.failed" and events[-1]["response"]["status"] == "failed"
    finally:
        client = redis.Redis.from_url(SHARED_URL)
        for key in client.scan_iter(match=f"{prefix}:{{*", count=1000):
            client.delete(key)
        client.close()
