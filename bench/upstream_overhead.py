"""What the upstream adapter adds: the gateway in front of an OpenAI-compatible server, against calling that server
directly, and against LiteLLM's proxy in front of the same server, in one run.

The upstream is a stub (this script, `--stub PORT`) that answers at once: non-streaming requests get one short text,
streaming ones `--deltas` text deltas, as chat chunks or Responses events. Three systems get the same requests:

- direct:  client → stub
- gateway: client → `gateway run` (memory:// store, default logging) → stub, `adapter: upstream` with
           `api: chat` for /v1/chat/completions and `api: responses` for /v1/responses
- gateway-redis: the same gateway with its store on Redis (`--redis`, the production set-up), for the stored
           /v1/responses scenario only; its keys live under a fresh prefix and are deleted afterwards
- litellm: client → `litellm --num_workers 1` → stub (if installed by bench/install_litellm.sh DIR)

Per round the systems run in a random order (seeded); each cell is the median over rounds. Latency is request →
full body, or → the last SSE event. "added" is a system's p50 minus direct's p50 in the same round.

    .venv/bin/python bench/upstream_overhead.py [--litellm DIR] [--redis redis://127.0.0.1:6379/0]
        [--rounds 3] [--seconds 3] [--deltas 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import mlx_common as common
from aiohttp import web

RESULTS = common.RESULTS
MASTER_KEY = "sk-bench-local-only"
LONG = "long answer please"


# ------------------------------------------------------------------ the stub upstream


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


def _chat_stream(deltas: int) -> bytes:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        return _sse({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})
    usage = {"prompt_tokens": 5, "completion_tokens": deltas, "total_tokens": 5 + deltas}
    return b"".join([chunk({"role": "assistant", "content": ""}), *(chunk({"content": f"w{i:02d}"[-3:]})
                     for i in range(deltas)), chunk({}, "stop"),
                     _sse({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "stub",
                           "choices": [], "usage": usage}), b"data: [DONE]\n\n"])


def _response_stream(deltas: int) -> bytes:
    text = "".join(f"w{i:02d}"[-3:] for i in range(deltas))
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    response = {"id": "resp_1", "object": "response", "created_at": 0, "model": "stub", "status": "completed",
                "output": [item], "usage": {"input_tokens": 5, "output_tokens": deltas, "total_tokens": 5 + deltas}}
    events = [_sse({"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
                   "response.created"),
              *(_sse({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
                      "delta": f"w{i:02d}"[-3:]}, "response.output_text.delta") for i in range(deltas)),
              _sse({"type": "response.completed", "response": response}, "response.completed")]
    return b"".join(events)


def _chat_whole() -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def _response_whole() -> dict[str, Any]:
    return json.loads(_response_stream(1).split(b"data: ")[-1])["response"]  # type: ignore[no-any-return]


def run_stub(port: int, deltas: int) -> None:
    """Streams are prebuilt: the stub's cost per request is as small as aiohttp allows. The prompt says how long
    the answer is ("long": `deltas` deltas, else one), so a non-streaming client request, which the gateway turns
    into a streamed upstream request, costs the upstream the same one-text answer as a direct call."""
    streams = {("chat", deltas): _chat_stream(deltas), ("chat", 1): _chat_stream(1),
               ("responses", deltas): _response_stream(deltas), ("responses", 1): _response_stream(1)}
    whole = {"chat": _chat_whole(), "responses": _response_whole()}

    async def answer(request: web.Request) -> web.StreamResponse:
        api = "chat" if request.path.endswith("/chat/completions") else "responses"
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(whole[api])
        count = deltas if LONG in json.dumps(body.get("messages") or body.get("input")) else 1
        return web.Response(body=streams[(api, count)], content_type="text/event-stream")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", answer), web.post("/v1/responses", answer),
                    web.get("/v1/models", models)])
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ------------------------------------------------------------------ the systems


def gateway_manifest(stub: str, store: str = "") -> str:
    return (store + "models:\n"
            f"  - {{name: stub, adapter: upstream, api: chat, base_url: '{stub}/v1', model: stub}}\n"
            f"  - {{name: stub-responses, adapter: upstream, api: responses, base_url: '{stub}/v1', model: stub}}\n")


def litellm_config(stub: str) -> str:
    return ("model_list:\n"
            "  - model_name: stub\n"
            f"    litellm_params: {{model: openai/stub, api_base: '{stub}/v1', api_key: unused}}\n")


# ------------------------------------------------------------------ load


SCENARIOS = [  # (name, path, streaming, extra body)
    ("chat", "/v1/chat/completions", False, {}),
    ("responses", "/v1/responses", False, {}),
    ("responses store:false", "/v1/responses", False, {"store": False}),
    ("chat stream", "/v1/chat/completions", True, {}),
    ("responses stream", "/v1/responses", True, {}),
]


def request_body(system: str, path: str, stream: bool, extra: dict[str, Any]) -> dict[str, Any]:
    model = "stub-responses" if system == "gateway" and path == "/v1/responses" else "stub"
    prompt = LONG if stream else "hi"
    if path == "/v1/chat/completions":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    else:
        body = {"model": model, "input": prompt, "stream": stream}
    return {**body, **extra}


async def one(client: httpx.AsyncClient, url: str, body: dict[str, Any], stream: bool) -> tuple[float, int]:
    """(seconds to the full body or the last event, events seen)."""
    started = time.perf_counter()
    if not stream:
        answer = await client.post(url, json=body)
        answer.raise_for_status()
        return time.perf_counter() - started, 0
    events = 0
    async with client.stream("POST", url, json=body) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            events += line.startswith("data:")
    return time.perf_counter() - started, events


async def load(url: str, body: dict[str, Any], stream: bool, concurrency: int, seconds: float,
               headers: dict[str, str]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:
        for _ in range(min(concurrency * 4, 40)):  # warm-up: connections open, caches hot
            await one(client, url, body, stream)
        latencies: list[float] = []
        events: list[int] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                latency, seen = await one(client, url, body, stream)
                latencies.append(latency)
                events.append(seen)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
            "rps": len(ordered) / elapsed, "requests": len(ordered), "events": max(events)}


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: run the stub on this port
    parser.add_argument("--litellm", type=Path, help="directory given to bench/install_litellm.sh")
    parser.add_argument("--redis", help="also run a gateway whose store is this Redis (loopback only)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.stub:
        run_stub(args.stub, args.deltas)
        return
    asyncio.run(bench(args))


async def bench(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    levels = [int(c) for c in args.concurrency.split(",")]
    stub_port, gateway_port, litellm_port, redis_port = common.free_port(), common.free_port(), common.free_port(), common.free_port()
    prefix = f"mlxgw-bench-{os.urandom(4).hex()}"
    stub = f"http://127.0.0.1:{stub_port}"
    folder = Path(tempfile.mkdtemp(prefix="upstream-bench-"))
    (folder / "gateway.yaml").write_text(gateway_manifest(stub))
    (folder / "gateway-redis.yaml").write_text(
        gateway_manifest(stub, f"store: {{url: '{args.redis}', key_prefix: {prefix}}}\n") if args.redis else "")
    (folder / "litellm.yaml").write_text(litellm_config(stub))
    litellm = args.litellm / "venv-litellm" / "bin" / "litellm" if args.litellm else None
    systems = {"direct": (stub, {}), "gateway": (f"http://127.0.0.1:{gateway_port}", {})}
    missing = None
    if args.redis:
        systems["gateway-redis"] = (f"http://127.0.0.1:{redis_port}", {})
    if litellm is not None and litellm.exists():
        systems["litellm"] = (f"http://127.0.0.1:{litellm_port}", {"Authorization": f"Bearer {MASTER_KEY}"})
    else:
        missing = f"litellm: not installed ({litellm or 'no --litellm DIR'}); run bench/install_litellm.sh DIR"
    rows: list[dict[str, Any]] = []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = (RESULTS / f"upstream_overhead-{stamp}.jsonl").open("w")
    raw.write(json.dumps({"kind": "run", "settings": vars(args) | {"litellm": args.litellm.name if args.litellm else None},
                          "python": sys.version.split()[0], "cores": os.cpu_count()}) + "\n")
    stub_cmd = [sys.executable, __file__, "--stub", str(stub_port), "--deltas", str(args.deltas)]
    def gateway_cmd(manifest: str, port: int) -> list[str]:
        return [sys.executable, "-m", "gateway", "run", "--config", str(folder / manifest), "--port", str(port),
                "--log-format", "json"]

    redis_ctx = (common.server(gateway_cmd("gateway-redis.yaml", redis_port), {}, f"http://127.0.0.1:{redis_port}/health")
                 if args.redis else _nothing())
    with common.server(stub_cmd, {}, f"{stub}/v1/models"), \
            common.server(gateway_cmd("gateway.yaml", gateway_port), {}, f"http://127.0.0.1:{gateway_port}/health"), \
            redis_ctx:
        litellm_env = {"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        litellm_ctx = (common.server([str(litellm), "--config", str(folder / "litellm.yaml"), "--port",
                                      str(litellm_port), "--num_workers", "1"], litellm_env,
                                     f"http://127.0.0.1:{litellm_port}/health/liveliness")
                       if "litellm" in systems else _nothing())
        with litellm_ctx:
            for round_index in range(args.rounds):
                for name, path, stream, extra in SCENARIOS:
                    for concurrency in levels:
                        order = list(systems)
                        rng.shuffle(order)
                        for system in order:
                            base, headers = systems[system]
                            if system == "litellm" and extra.get("store") is False:
                                continue  # LiteLLM stores nothing either way
                            if system == "gateway-redis" and name != "responses":
                                continue  # the store is what differs: only the stored scenario tells
                            result = await load(base + path, request_body(system, path, stream, extra), stream,
                                                concurrency, args.seconds, headers)
                            row = {"round": round_index, "scenario": name, "concurrency": concurrency,
                                   "system": system, **result}
                            rows.append(row)
                            raw.write(json.dumps(row) + "\n")
                            raw.flush()
    raw.close()
    if args.redis:
        delete_keys(args.redis, prefix)
    text = report(rows, args.deltas, missing)
    (RESULTS / f"upstream_overhead-{stamp}.txt").write_text(text)
    print(text)


def delete_keys(url: str, prefix: str) -> None:
    """Remove what the benchmark's gateway stored: only keys under its own fresh prefix."""
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"*{prefix}*", count=1000):
        client.delete(key)
    client.close()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else float("nan")


def report(rows: list[dict[str, Any]], deltas: int, missing: str | None) -> str:
    """Medians over rounds; "added" per round against direct in the same round, then its median."""
    lines = ["scenario               conc  system         p50 ms   p99 ms    req/s   added p50 ms  per event ms"]
    verdicts: list[str] = []
    cells = sorted({(r["scenario"], r["concurrency"]) for r in rows}, key=lambda c: (
        [s[0] for s in SCENARIOS].index(c[0]), c[1]))
    for scenario, concurrency in cells:
        here = [r for r in rows if r["scenario"] == scenario and r["concurrency"] == concurrency]
        by_round = {(r["round"], r["system"]): r for r in here}
        systems = [s for s in ("direct", "gateway", "gateway-redis", "litellm") if any(r["system"] == s for r in here)]
        for system in systems:
            mine = [r for r in here if r["system"] == system]
            added = [r["p50_ms"] - by_round[(r["round"], "direct")]["p50_ms"] for r in mine
                     if (r["round"], "direct") in by_round]
            added_p50 = statistics.median(added) if system != "direct" and added else float("nan")
            per_event = added_p50 / deltas if "stream" in scenario and system != "direct" else float("nan")
            lines.append(f"{scenario:<22} {concurrency:>4}  {system:<13} {_median(mine, 'p50_ms'):>7.2f} "
                         f"{_median(mine, 'p99_ms'):>8.2f} {_median(mine, 'rps'):>8.0f}   {added_p50:>10.2f}"
                         f"  {per_event:>11.4f}")
        if concurrency == 1 and "stream" not in scenario and "gateway" in systems:
            gateway_added = statistics.median(
                r["p50_ms"] - by_round[(r["round"], "direct")]["p50_ms"] for r in here if r["system"] == "gateway")
            verdicts.append(f"{scenario}: gateway adds {gateway_added:.2f} ms p50 (target <= 1 ms): "
                            + ("met" if gateway_added <= 1 else "MISSED"))
            if "gateway-redis" in systems:
                redis_added = statistics.median(r["p50_ms"] - by_round[(r["round"], "direct")]["p50_ms"]
                                                for r in here if r["system"] == "gateway-redis")
                verdicts.append(f"{scenario}: gateway with a Redis store adds {redis_added:.2f} ms p50 "
                                "(target <= 1 ms): " + ("met" if redis_added <= 1 else "MISSED"))
        if "stream" in scenario and concurrency == 1 and "gateway" in systems:
            per = statistics.median(r["p50_ms"] - by_round[(r["round"], "direct")]["p50_ms"]
                                    for r in here if r["system"] == "gateway") / deltas
            verdicts.append(f"{scenario}: gateway adds {per:.4f} ms per streamed event (target <= 0.05 ms): "
                            + ("met" if per <= 0.05 else "MISSED"))
        if "litellm" in systems and "gateway" in systems and concurrency == max(r["concurrency"] for r in rows):
            ratio = _median([r for r in here if r["system"] == "gateway"], "rps") / _median(
                [r for r in here if r["system"] == "litellm"], "rps")
            verdicts.append(f"{scenario} at {concurrency} clients: gateway req/s = {ratio:.1f}x LiteLLM's "
                            "(target >= 10x): " + ("met" if ratio >= 10 else "MISSED"))
    if missing:
        verdicts.append(missing)
    return "\n".join([*lines, "", *verdicts]) + "\n"


if __name__ == "__main__":
    main()
