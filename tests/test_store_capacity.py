"""Store capacity: a burst of stored requests waits its turn for a store connection instead of failing,
and `memory://` stays under `store.memory_max_mb` by evicting whole old chains."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from tests.conftest import make_config, serve
from tests.redisproc import SHARED_URL, need_shared_redis

BURST = 512

MANIFEST = """
store: {{url: "{url}", key_prefix: "{prefix}"{extra}}}
models:
  - name: scripted
    aliases: [demo]
    adapter: scripted
    script: {{chunk_chars: 5, steps: [{{reasoning: "Think first.", text: "Stored under load."}}]}}
  - name: echo
    adapter: scripted
    script: {{mode: echo, chunk_chars: 1000000}}
"""


def manifest(url: str, prefix: str, **store: Any) -> str:
    extra = "".join(f", {key}: {value}" for key, value in store.items())
    return MANIFEST.format(url=url, prefix=prefix, extra=extra)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of our own on the shared Redis; afterwards only keys under it are deleted."""
    need_shared_redis()
    prefix = f"mlxgw-test-{os.urandom(6).hex()}"
    yield prefix
    client = Redis.from_url(SHARED_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start:start + 500])
    finally:
        await client.aclose()


async def burst(base: str, count: int) -> dict[str, Any]:
    """`count` stored requests at once (and /ready polled meanwhile), then a GET of every id at once."""
    # No keep-alive: a connection idle past the server's keep-alive timeout while the burst runs would be
    # closed under the client's feet, which is not what this measures.
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        done = asyncio.Event()

        async def poll_ready() -> list[int]:
            seen = []
            while not done.is_set():
                seen.append((await http.get("/ready")).status_code)
                await asyncio.sleep(0.05)
            return seen

        poller = asyncio.create_task(poll_ready())
        started = time.perf_counter()
        posts = await asyncio.gather(*(
            http.post("/v1/responses", json={"model": "demo", "input": f"question {k}", "store": True})
            for k in range(count)
        ))
        elapsed = time.perf_counter() - started
        done.set()
        ready = await poller
        ids = [r.json()["id"] for r in posts if r.status_code == 200]
        gets = await asyncio.gather(*(http.get(f"/v1/responses/{response_id}") for response_id in ids))
        health = (await http.get("/health")).json()
    return {
        "posts": Counter(r.status_code for r in posts),
        "errors": Counter(r.json()["error"]["code"] for r in posts if r.status_code != 200),
        "gets": Counter(r.status_code for r in gets),
        "completed": sum(r.json()["status"] == "completed" for r in gets if r.status_code == 200),
        "ready": Counter(ready),
        "seconds": elapsed,
        "health": health,
    }


def check_burst(outcome: dict[str, Any]) -> None:
    print(f"burst of {BURST}: {dict(outcome['posts'])} {dict(outcome['errors'])} in {outcome['seconds']:.1f}s; "
          f"GET {dict(outcome['gets'])}; /ready {dict(outcome['ready'])}; store {outcome['health']['store']}")
    assert outcome["posts"] == {200: BURST}, outcome["errors"]
    assert outcome["gets"] == {200: BURST} and outcome["completed"] == BURST
    assert set(outcome["ready"]) == {200}  # the store never looked down
    assert outcome["health"]["store"]["state"] == "ok"


async def test_a_burst_on_memory_waits_for_the_store_instead_of_failing() -> None:
    with serve(make_config(manifest("memory://", "mlxgw"))) as base:
        check_burst(await burst(base, BURST))


@pytest.mark.redis
async def test_a_burst_on_redis_waits_for_the_store_instead_of_failing(redis_prefix: str) -> None:
    with serve(make_config(manifest(SHARED_URL, redis_prefix))) as base:
        check_burst(await burst(base, BURST))


def test_memory_evicts_the_oldest_chains_and_says_so() -> None:
    text = "y" * 60_000  # about 200 KB stored per request: input, its item, and the echo of it
    with structlog.testing.capture_logs() as logs, serve(make_config(manifest("memory://", "mlxgw", memory_max_mb=1))) as base, \
            httpx.Client(base_url=base, timeout=30) as http:
        first = http.post("/v1/responses", json={"model": "echo", "input": text}).json()
        follow_up = http.post("/v1/responses", json={"model": "echo", "input": "more",
                                                     "previous_response_id": first["id"]})
        assert follow_up.status_code == 200
        later = [http.post("/v1/responses", json={"model": "echo", "input": text}).json()["id"] for _ in range(12)]
        memory = http.get("/health").json()["store"]["memory"]
        assert 0 < memory["used_bytes"] <= memory["max_bytes"] == 1024 * 1024
        assert memory["evicted_chains"] >= 6
        metrics = http.get("/metrics").text
        assert f"mlxgw_store_memory_bytes {float(memory['used_bytes'])}" in metrics
        assert f"mlxgw_store_evictions_total {float(memory['evicted_responses'])}" in metrics

        # The oldest chain is gone whole: a clean 404 / 400 naming it, never a 500.
        assert http.get(f"/v1/responses/{first['id']}").status_code == 404
        assert http.get(f"/v1/responses/{follow_up.json()['id']}").status_code == 404
        chained = http.post("/v1/responses", json={"model": "echo", "input": "again",
                                                   "previous_response_id": follow_up.json()["id"]})
        assert chained.status_code == 400
        error = chained.json()["error"]
        assert error["code"] == "previous_response_not_found" and error["param"] == "previous_response_id"
        assert follow_up.json()["id"] in error["message"]
        referenced = http.post("/v1/responses", json={"model": "echo", "input": [
            {"type": "item_reference", "id": first["output"][0]["id"]}]})
        assert referenced.status_code == 400 and first["output"][0]["id"] in referenced.json()["error"]["message"]
        assert http.get(f"/v1/responses/{later[-1]}").status_code == 200  # the newest are kept
    evictions = [line for line in logs if line["event"] == "store_evicted"]
    assert evictions and evictions[0]["log_level"] == "warning"
    assert sum(line["responses"] for line in evictions) == memory["evicted_responses"]
    assert all(line["used_bytes"] <= line["max_bytes"] for line in evictions)
