"""The store on a real Redis: loading a 200-turn chain with this layout (one Lua script) versus a naive
walk (one round trip per ancestor), and what the store adds to each request (p50/p99).

    .venv/bin/python bench/store_chain.py [--url redis://127.0.0.1:6379/0] [--turns 200] [--loads 50] [--requests 300]

Writes only keys under a fresh `mlxgw-bench-<hex>` prefix and deletes them afterwards. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from gateway.config import StoreConfig
from gateway.protocol import (
    FunctionCall,
    FunctionCallOutput,
    InputItem,
    Message,
    OutputText,
    Reasoning,
    ReasoningText,
    Response,
    SummaryText,
)
from gateway.store import RedisStore, TurnRecord, new_tag, tag_of, tagged_id
from gateway.store.codec import decode_input, decode_output

MANIFEST = """
store: {{url: "{url}", key_prefix: "{prefix}"}}
models:
  - name: small
    adapter: scripted
    script: {{chunk_chars: 64, steps: [{{text: "ok"}}]}}
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(samples: list[float]) -> tuple[float, float]:
    return percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000


def turn_items(tag: str, k: int) -> tuple[list[InputItem], list[Reasoning | Message | FunctionCall]]:
    """A realistic agent turn: a tool output (2 KB) and a user note in; reasoning, text and a call out."""
    call_id = f"call_{k}"
    given: list[InputItem] = [
        FunctionCallOutput(id=tagged_id("fco", tag), call_id=f"call_{k - 1}", output="line of tool output\n" * 100),
        Message(id=tagged_id("msg", tag), role="user", content=f"step {k}: keep going " * 10),
    ]
    made = [
        Reasoning(id=tagged_id("rs", tag), summary=[SummaryText(text="thinking " * 30)],
                  content=[ReasoningText(text="thinking " * 30)], status="completed"),
        Message(id=tagged_id("msg", tag), role="assistant", status="completed",
                content=[OutputText(text="Here is what I will do next. " * 10)]),
        FunctionCall(id=tagged_id("fc", tag), call_id=call_id, name="exec_command", arguments='{"cmd":"ls -la"}',
                     status="completed"),
    ]
    return given, made


async def build(store: RedisStore, turns: int) -> tuple[list[str], int, int]:
    tag, previous, ids = new_tag(), None, []
    own_bytes = history_bytes = running = 0
    for k in range(turns):
        given, made = turn_items(tag, k)
        started = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m",
                           previous_response_id=previous)
        new_ids = [i.id for i in given]  # type: ignore[union-attr]
        await store.begin(TurnRecord(response=started, input=given, new_item_ids=new_ids))
        await store.finish(msgspec.structs.replace(started, status="completed", output=made))
        size = len(msgspec.msgpack.encode(given)) + len(msgspec.msgpack.encode(made))
        own_bytes += size
        running += size
        history_bytes += running  # what a layout copying the whole history into every turn would hold
        previous = started.id
        ids.append(started.id)
    return ids, own_bytes, history_bytes


async def naive_walk(store: RedisStore, response_id: str) -> tuple[int, int]:
    """One HMGET per ancestor, following `previous_response_id`: same data, one round trip per turn."""
    tag = tag_of(response_id)
    assert tag is not None
    trips, items, current = 0, 0, response_id
    while current:
        previous, given, made = await store.client.hmget(store.keys.record(tag, current), ["p", "i", "o"])
        trips += 1
        items += len(decode_input(given)) + len(decode_output(made))
        current = previous.decode()
    return trips, items


async def chain_bench(store: RedisStore, turns: int, loads: int) -> None:
    ids, own_bytes, history_bytes = await build(store, turns)
    tip = ids[-1]
    await store.chain(tip)
    await naive_walk(store, tip)  # warm both paths
    scripted, naive = [], []
    for _ in range(loads):
        began = time.perf_counter()
        loaded = await store.chain(tip)
        scripted.append(time.perf_counter() - began)
        began = time.perf_counter()
        trips, items = await naive_walk(store, tip)
        naive.append(time.perf_counter() - began)
    assert sum(len(t.input) + len(t.output) for t in loaded) == items == turns * 5
    print(f"\nLoad a {turns}-turn chain ({turns * 5} items), {loads} loads each")
    print(f"  {'':34}{'p50 ms':>9}{'p99 ms':>9}{'round trips':>13}")
    print(f"  {'this layout (one Lua script)':34}{ms(scripted)[0]:9.2f}{ms(scripted)[1]:9.2f}{1:13d}")
    print(f"  {'naive walk (one HMGET per turn)':34}{ms(naive)[0]:9.2f}{ms(naive)[1]:9.2f}{trips:13d}")
    print(f"  speed-up at p50: {ms(naive)[0] / ms(scripted)[0]:.1f}x")
    print(f"  stored items: {own_bytes / 1024:.0f} KiB as per-turn records; a whole-history-per-turn layout "
          f"would hold {history_bytes / 1024 / 1024:.1f} MiB")


async def direct_bench(store: RedisStore, requests: int) -> None:
    """The store calls of one request, timed directly: begin + finish, and chain(20) + begin + finish."""
    base_ids, _, _ = await build(store, 20)
    fresh, chained = [], []
    for k in range(requests):
        for previous, samples in ((None, fresh), (base_ids[-1], chained)):
            tag = tag_of(previous) if previous else new_tag()
            assert tag is not None
            given, made = turn_items(tag, k)
            started = Response(id=tagged_id("resp", tag), created_at=0, status="in_progress", model="m",
                               previous_response_id=previous)
            began = time.perf_counter()
            if previous:
                await store.chain(previous)
            new_ids = [i.id for i in given]  # type: ignore[union-attr]
            await store.begin(TurnRecord(response=started, input=given, new_item_ids=new_ids))
            await store.finish(msgspec.structs.replace(started, status="completed", output=made))
            samples.append(time.perf_counter() - began)
    print(f"\nStore calls per request, timed in-process ({requests} requests each)")
    print(f"  {'':34}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"  {'store: true (begin + finish)':34}{ms(fresh)[0]:9.2f}{ms(fresh)[1]:9.2f}")
    print(f"  {'+ previous_response_id (20 turns)':34}{ms(chained)[0]:9.2f}{ms(chained)[1]:9.2f}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def http_bench(url: str, prefix: str, requests: int) -> None:
    """End to end through a `gateway run` process: the same tiny request with and without the store."""
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "gateway.yaml"
        manifest.write_text(MANIFEST.format(url=url, prefix=prefix))
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(manifest), "--port", str(port),
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=10) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if http.get("/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the gateway did not start")
                    time.sleep(0.05)
                tip = None
                for k in range(20):
                    body = {"model": "small", "input": f"turn {k}", **({"previous_response_id": tip} if tip else {})}
                    tip = http.post("/v1/responses", json=body).json()["id"]
                cases = {
                    "store: false": {"store": False},
                    "store: true": {},
                    "store: true + previous (20 turns)": {"previous_response_id": tip},
                }
                samples: dict[str, list[float]] = {name: [] for name in cases}
                for _ in range(20):  # warm-up
                    for extra in cases.values():
                        http.post("/v1/responses", json={"model": "small", "input": "hi", **extra})
                for _ in range(requests):  # interleaved, so drift hits every case alike
                    for name, extra in cases.items():
                        began = time.perf_counter()
                        response = http.post("/v1/responses", json={"model": "small", "input": "hi", **extra})
                        samples[name].append(time.perf_counter() - began)
                        assert response.status_code == 200, response.text
        finally:
            process.terminate()
            process.wait(timeout=15)
    baseline = ms(samples["store: false"])
    print(f"\nHTTP round trip through `gateway run` ({requests} requests each, sequential)")
    print(f"  {'':34}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}")
    for name, values in samples.items():
        p50, p99 = ms(values)
        print(f"  {name:34}{p50:9.2f}{p99:9.2f}{p50 - baseline[0]:11.2f}{p99 - baseline[1]:11.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    prefix = f"mlxgw-bench-{os.urandom(4).hex()}"
    store = RedisStore.from_config(StoreConfig(url=args.url, key_prefix=prefix))
    info = await store.client.info("server")
    print(f"Redis {info['redis_version']} at {args.url}; Python {sys.version.split()[0]}; key prefix {prefix}")
    try:
        await chain_bench(store, args.turns, args.loads)
        await direct_bench(store, args.requests)
        await asyncio.to_thread(http_bench, args.url, prefix, args.requests)
    finally:
        keys = [key async for key in store.client.scan_iter(match=store.keys.pattern(), count=1000)]
        for start in range(0, len(keys), 500):
            await store.client.delete(*keys[start : start + 500])
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main())
